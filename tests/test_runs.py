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


def test_a_run_in_two_files_is_an_error_naming_both(tmp_path):
    _write(tmp_path / "x" / "one.json", [_row(finetune_seed=1)])
    _write(tmp_path / "y" / "two.json", [_row(finetune_seed=1)])
    with pytest.raises(
        InitbenchError, match=r"two\.json and .*one\.json both hold .* seed 0, fine-tune seed 1,"
    ):
        collect_runs(tmp_path, GRID)
