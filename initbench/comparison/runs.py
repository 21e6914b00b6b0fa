"""Finding the comparison's runs: the result files of every ``compare_run`` variant."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from initbench.core.errors import InitbenchError


def collect_runs(
    folder: str | os.PathLike[str], grid: Collection[tuple[str, int, int, float]]
) -> list[dict[str, Any]]:
    """Every run row under ``folder`` (``*.json`` lists of rows, searched recursively, in
    sorted path order) whose ``(init, seed, finetune_seed, label_fraction)`` is in
    ``grid``. Runs outside ``grid`` (say, of a seed since dropped from params) are left
    out.

    Raises:
        InitbenchError: a run (protocol, init, seed, fine-tune seed, label fraction) is in
            two files, naming both.
    """
    found: dict[tuple, tuple[Path, dict[str, Any]]] = {}  # key -> path, row
    for path in sorted(Path(folder).rglob("*.json")):
        for row in json.loads(path.read_text()):
            run = (row["init"], row["seed"], row["finetune_seed"], row["label_fraction"])
            if run not in grid:
                continue
            key = (row["protocol"], *run)
            if key in found:
                raise InitbenchError(
                    f"{path} and {found[key][0]} both hold the {key[0]} run of init {key[1]}, "
                    f"seed {key[2]}, fine-tune seed {key[3]}, label fraction {key[4]:g}; delete "
                    "the stale one (a file no stage of dvc.yaml writes) and run `dvc repro` again"
                )
            found[key] = (path, row)
    return [row for _, row in found.values()]


def pretraining_reports(
    folder: str | os.PathLike[str], strategies: Collection[str], seeds: Collection[int]
) -> dict[str, dict[int, dict[str, Any]]]:
    """The reports of the pretraining runs under ``folder``, laid out as every init
    strategy writes them (``<strategy>/seed<S>.json`` beside ``seed<S>.pt``), for the
    ``strategies`` and ``seeds`` asked; strategies without a report that records its
    budget (``steps``) are left out.

    Returns:
        ``{strategy: {seed: report}}``.

    Raises:
        InitbenchError: a report of an asked strategy and seed is missing, naming it.
    """
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for strategy in strategies:
        for seed in sorted(seeds):
            path = Path(folder) / strategy / f"seed{seed}.json"
            if not path.is_file():
                raise InitbenchError(f"{path}: not found; run `dvc repro` to pretrain it")
            report = json.loads(path.read_text())
            if "steps" in report:
                out.setdefault(strategy, {})[seed] = report
    return out
