"""Tests of finding the comparison's runs (initbench.comparison.runs.collect_runs)."""

from __future__ import annotations

import json

import pytest

from initbench.comparison.runs import collect_runs
from initbench.core.errors import InitbenchError

GRID = {("random", 0, 0, 0.01), ("random", 0, 1, 0.01)}


def _row(**fields):
    return {"protocol": "finetune", "init": "random", "seed": 0, "label_fraction": 0.01,
            "accuracy": 0.5} | fields  # fmt: skip


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


def test_rows_of_the_grid_are_collected_and_others_left_out(tmp_path):
    _write(tmp_path / "a" / "seed0-ft0.json", [_row(finetune_seed=0)])
    _write(tmp_path / "a" / "seed0-ft1.json", [_row(finetune_seed=1)])
    _write(tmp_path / "a" / "seed0-ft2.json", [_row(finetune_seed=2)])  # not in the grid
    rows = collect_runs(tmp_path, GRID)
    assert sorted(r["finetune_seed"] for r in rows) == [0, 1]


def test_an_earlier_versions_file_is_ignored_with_a_note_beside_its_rerun(tmp_path, capsys):
    """A variant renamed by an upgrade leaves its old output behind (DVC keeps it): the
    current file wins and the old one is named, whichever is found first."""
    _write(tmp_path / "random" / "seed0-labels0.01.json", [_row(accuracy=0.4)])  # no key
    _write(tmp_path / "random" / "seed0-ft0-labels0.01.json", [_row(finetune_seed=0)])
    rows = collect_runs(tmp_path, GRID)
    assert [(r["finetune_seed"], r["accuracy"]) for r in rows] == [(0, 0.5)]
    err = capsys.readouterr().err
    assert "ignored" in err and "seed0-labels0.01.json" in err and "delete it" in err


def test_an_earlier_versions_file_alone_is_read_as_finetune_seed_0(tmp_path, capsys):
    _write(tmp_path / "random" / "seed0-labels0.01.json", _row())  # a single dict, too
    assert [r["finetune_seed"] for r in collect_runs(tmp_path, GRID)] == [0]
    assert capsys.readouterr().err == ""


def test_a_run_in_two_current_files_is_an_error_naming_both(tmp_path):
    _write(tmp_path / "x" / "one.json", [_row(finetune_seed=1)])
    _write(tmp_path / "y" / "two.json", [_row(finetune_seed=1)])
    with pytest.raises(
        InitbenchError, match=r"two\.json and .*one\.json both hold .* seed 0, fine-tune seed 1,"
    ):
        collect_runs(tmp_path, GRID)
