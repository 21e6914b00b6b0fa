"""Aggregating the comparison: per-cell statistics, paired differences against random,
verdicts. Pure functions on plain dicts.

A *result* is one run's test accuracy: ``{"init", "seed", "label_fraction", "protocol",
"accuracy", ...}``. A *cell* is one init x label fraction x protocol, over seeds.

Statistics (Student's t over seeds, e.g. Dror et al. 2018, "The Hitchhiker's Guide to
Testing Statistical Significance in NLP", for the paired case): a cell's 95% CI is
``mean +- t_{0.975, n-1} * std / sqrt(n)`` with the sample std (``ddof=1``). Runs are
paired by seed (same label subset, head init, data order), so an init is compared with
random through the per-seed differences ``d_s = acc(init, s) - acc(random, s)``, whose
t-interval is much narrower than two overlapping cell CIs when seeds share difficulty.
The verdict is ``better`` or ``worse`` when that interval excludes 0, else
``no detectable difference``; with fewer than 2 seeds there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95

REFERENCE = "random"

PROTOCOLS: tuple[str, ...] = ("finetune", "linear_probe")

BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = (
    "better",
    "worse",
    "no detectable difference",
    "too few seeds",
)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean, sample std, n and the two-sided Student-t confidence interval of ``values``.

    Returns:
        ``{"mean", "std", "n", "ci95_low", "ci95_high"}``; ``std`` and the bounds are
        ``None`` when ``n < 2``.

    Raises:
        ValueError: ``values`` is empty.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "std": None, "n": 1, "ci95_low": None, "ci95_high": None}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return {"mean": mean, "std": std, "n": int(x.size),
            "ci95_low": mean - half, "ci95_high": mean + half}  # fmt: skip


def verdict(low: float | None, high: float | None) -> str:
    """``better`` if the CI of a difference lies above 0, ``worse`` if below, else none."""
    if low is None or high is None:
        return TOO_FEW
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


def fraction_key(fraction: float) -> str:
    """``0.01 -> "labels_1%"``: a metrics key that reads well in ``dvc metrics diff``."""
    return f"labels_{fraction * 100:g}%"


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def summarize(
    results: Sequence[dict[str, Any]],
    inits: Sequence[str],
    seeds: Sequence[int],
    label_fractions: Sequence[float],
    protocols: Sequence[str] = PROTOCOLS,
) -> dict[str, Any]:
    """Aggregate run results into the full summary (``reports/compare.json``).

    Returns:
        ``{protocol: {fraction_key: {init: cell}}}`` where each cell holds ``mean``,
        ``std``, ``n``, ``ci95_low``, ``ci95_high`` of test accuracy over seeds, and every
        init but random also ``diff_vs_random`` (mean paired difference), its
        ``diff_ci95_low``/``diff_ci95_high`` and ``verdict``. Numbers rounded to 6 digits.

    Raises:
        ValueError: a run is missing or present twice, naming it; or ``random`` is not
            among ``inits``.
    """
    if REFERENCE not in inits:
        raise ValueError(f"inits {list(inits)} must include {REFERENCE!r}, the reference")
    table: dict[tuple[str, str, float, int], float] = {}
    for row in results:
        key = (row["protocol"], row["init"], float(row["label_fraction"]), int(row["seed"]))
        if key in table:
            raise ValueError(f"run {key} appears twice")
        table[key] = float(row["accuracy"])
    out: dict[str, Any] = {}
    for protocol in protocols:
        out[protocol] = {}
        for fraction in label_fractions:
            cells: dict[str, Any] = {}
            by_init: dict[str, list[float]] = {}
            for init in inits:
                accuracies = []
                for seed in seeds:
                    key = (protocol, init, float(fraction), int(seed))
                    if key not in table:
                        raise ValueError(
                            f"no result for protocol={protocol} init={init} "
                            f"label_fraction={fraction:g} seed={seed}; run `dvc repro`"
                        )
                    accuracies.append(table[key])
                by_init[init] = accuracies
                cells[init] = {k: _round(v) if k != "n" else v
                               for k, v in t_interval(accuracies).items()}  # fmt: skip
            for init in inits:
                if init == REFERENCE:
                    continue
                diffs = np.subtract(by_init[init], by_init[REFERENCE])
                interval = t_interval(diffs)
                cells[init] |= {
                    "diff_vs_random": _round(interval["mean"]),
                    "diff_ci95_low": _round(interval["ci95_low"]),
                    "diff_ci95_high": _round(interval["ci95_high"]),
                    "verdict": verdict(interval["ci95_low"], interval["ci95_high"]),
                }
            out[protocol][fraction_key(fraction)] = cells
    return out
