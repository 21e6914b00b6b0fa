import pytest

from initbench.core.cli import run
from initbench.core.errors import InitbenchError


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


def _git_project(root, monkeypatch):
    """A committed params.yaml and data.dvc, and DVC's environment for a stage run there."""
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (root / "params.yaml").write_text("init: random\n")
    (root / "data.dvc").write_text("outs:\n- md5: 1.dir\n  path: data\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    monkeypatch.setenv("DVC_STAGE", "finetune")
    monkeypatch.setenv("DVC_ROOT", str(root))


def _failing_stage(capsys) -> list[str]:
    def main():
        raise InitbenchError("params.yaml: init must be one of: random (got 'randm')")

    with pytest.raises(SystemExit):
        run(main)
    return capsys.readouterr().err.splitlines()


def test_a_failed_stage_says_how_to_get_the_committed_params_back(tmp_path, monkeypatch, capsys):
    _git_project(tmp_path, monkeypatch)
    (tmp_path / "params.yaml").write_text("init: randm\n")  # as dvc exp run -S init=randm
    lines = _failing_stage(capsys)
    assert lines[0].startswith("error: params.yaml: init")
    assert len(lines) == 2 and "`git checkout params.yaml && dvc repro`" in lines[1], lines


def test_a_failed_stage_says_how_to_get_the_committed_data_back(tmp_path, monkeypatch, capsys):
    _git_project(tmp_path, monkeypatch)
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 2.dir\n  path: data\n")
    lines = _failing_stage(capsys)
    assert len(lines) == 2 and "`git checkout data.dvc && dvc checkout data.dvc" in lines[1]


def test_no_hint_when_nothing_changed_or_outside_dvc(tmp_path, monkeypatch, capsys):
    _git_project(tmp_path, monkeypatch)
    assert len(_failing_stage(capsys)) == 1
    (tmp_path / "params.yaml").write_text("init: randm\n")
    monkeypatch.delenv("DVC_STAGE")
    assert len(_failing_stage(capsys)) == 1
