"""The comparison's fine-tune budgets as the ``finetune_budget`` stage writes them: reading
them, and saying how each was set. Each seed and fine-tune seed has its own budgets, set
on that seed's random-init run, so no run's budget reads labels it does not have. The
search itself is :mod:`initbench.comparison.budget_search`; this module trains nothing,
so the report can read the budgets without the training code."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from initbench.core.errors import InitbenchError

#: The reference init whose fine-tunes set every init's budget.
REFERENCE = "random"


def budget_line(record: Mapping[str, Any]) -> str:
    """How one fraction's budget was set, e.g. ``2,250 steps at 1% (the reference's train
    loss at a plateau at steps 2,000 and 2,250)``."""
    where = f"{record['steps']:,} steps at {record['label_fraction'] * 100:g}%"
    if record["reached"] is None:
        return where + " (the floor)"
    if record["reached"]:
        checks = [c["step"] for c in record.get("checks") or []][-2:]
        at = f"steps {checks[0]:,} and {checks[1]:,}" if len(checks) == 2 else "its end"
        return where + f" (the reference's train loss at a plateau at {at})"
    return where + " (finetune.max_steps: NOT at a plateau yet)"


def read_budget_file(path: str | os.PathLike[str], fractions: Sequence[float]) -> dict[str, Any]:
    """A ``finetune_budget`` stage's JSON at ``path`` (its budgets, or its search record),
    its ``budgets`` keyed by label fraction and narrowed to ``fractions``: ``{"seed",
    "finetune_seed", "budgets": {label_fraction: record}, ...}``; a search record's
    entries are :func:`initbench.comparison.budget_search.find_budget`'s.

    Raises:
        InitbenchError: the file is missing or unreadable, or lacks one of ``fractions``.
    """
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        records = {float(r["label_fraction"]): r for r in content["budgets"]}
        for r in records.values():
            int(r["steps"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InitbenchError(f"{path}: not a fine-tune budget file ({exc}); run "
                             "`dvc repro --glob 'finetune_budget@*'` to write it") from None  # fmt: skip
    missing = [x for x in fractions if x not in records]
    if missing:
        raise InitbenchError(
            f"{path}: no budget for label fraction(s) {', '.join(f'{x:g}' for x in missing)} "
            f"(it has {', '.join(f'{x:g}' for x in records) or 'none'}); run "
            "`dvc repro --glob 'finetune_budget@*'` with them in compare.label_fractions"
        )
    return content | {"budgets": {x: records[x] for x in fractions}}


def read_budgets(path: str | os.PathLike[str], fractions: Sequence[float]) -> dict[float, int]:
    """``{label_fraction: steps}`` of ``fractions`` from the budget file ``path``.

    Raises:
        InitbenchError: as :func:`read_budget_file`.
    """
    budgets = read_budget_file(path, fractions)["budgets"]
    return {x: int(record["steps"]) for x, record in budgets.items()}


def budget_file(seed: int, finetune_seed: int) -> str:
    """The file name of one seed and fine-tune seed's budgets (and of its search record,
    in another folder): ``seed<S>-ft<F>.json``."""
    return f"seed{seed}-ft{finetune_seed}.json"


def read_searches(
    folder: str | os.PathLike[str],
    runs: Sequence[tuple[int, int]],
    fractions: Sequence[float],
) -> list[dict[str, Any]]:
    """The search records of ``runs`` (seed, fine-tune seed) in ``folder``, in that order,
    as :func:`read_budget_file` reads each.

    Raises:
        InitbenchError: a record is missing, unreadable or lacks one of ``fractions``.
    """
    return [read_budget_file(Path(folder) / budget_file(s, f), fractions) for s, f in runs]
