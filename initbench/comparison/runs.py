"""Finding the comparison's runs: the result files of every ``compare_run`` variant."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from initbench.core.errors import InitbenchError


def collect_runs(
    folder: str | os.PathLike[str], grid: Collection[tuple[str, int, int, float]]
) -> list[dict[str, Any]]:
    """Every run row under ``folder`` (``*.json``, searched recursively, in sorted path
    order) whose ``(init, seed, finetune_seed, label_fraction)`` is in ``grid``.

    Each file is a list of runs; a file of one run (a dict, as earlier versions wrote) is
    read too, and a row without ``finetune_seed`` (earlier versions) is fine-tune seed 0:
    where a current file holds the same run (the variant was renamed, and DVC leaves the
    old file), the old row is ignored with a note on stderr naming its file. Runs outside
    ``grid`` (say, of a seed since dropped from params) are left out.

    Raises:
        InitbenchError: a run (protocol, init, seed, fine-tune seed, label fraction) is in
            two files, naming both.
    """
    found: dict[tuple, tuple[Path, dict[str, Any], bool]] = {}  # key -> path, row, old
    legacy: set[Path] = set()
    for path in sorted(Path(folder).rglob("*.json")):
        loaded = json.loads(path.read_text())
        for row in [loaded] if isinstance(loaded, dict) else loaded:
            old = "finetune_seed" not in row
            row = {"finetune_seed": 0} | row
            run = (row["init"], row["seed"], row["finetune_seed"], row["label_fraction"])
            if run not in grid:
                continue
            key = (row["protocol"], *run)
            if key in found:
                other, _, other_old = found[key]
                if old == other_old:
                    raise InitbenchError(
                        f"{path} and {other} both hold the {key[0]} run of init {key[1]}, seed "
                        f"{key[2]}, fine-tune seed {key[3]}, label fraction {key[4]:g}; delete the "
                        "stale one (a file no stage of dvc.yaml writes) and run `dvc repro` again"
                    )
                legacy.add(path if old else other)  # one file of each layout: keep the current
                if old:
                    continue
            found[key] = (path, row, old)
    for path in sorted(legacy):
        print(f"compare: ignored {path}: an earlier version's result, since re-run under "
              "another name; delete it", file=sys.stderr)  # fmt: skip
    return [row for _, row, _ in found.values()]


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
