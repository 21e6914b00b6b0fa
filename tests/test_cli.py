import pytest

from initbench.cli import run
from initbench.errors import InitbenchError


def test_a_stage_ends_with_its_wall_time(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/somewhere/stages/kmeans.py"])
    run(lambda: print("kmeans: wrote x"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "kmeans: wrote x"
    assert lines[-1].startswith("kmeans: done in ") and lines[-1].endswith(" s")
    float(lines[-1].removeprefix("kmeans: done in ").removesuffix(" s"))


def test_wall_time_can_be_left_out(capsys):
    run(lambda: print("params.yaml: valid"), wall_time=False)
    assert capsys.readouterr().out == "params.yaml: valid\n"


def test_an_initbench_error_is_one_line_and_exit_1(capsys):
    def main():
        raise InitbenchError("data/x.png: unreadable")

    with pytest.raises(SystemExit) as exit_info:
        run(main)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.err == "error: data/x.png: unreadable\n"
    assert "done in" not in captured.out
