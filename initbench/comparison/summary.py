"""Aggregating the comparison's runs into its summary (``reports/compare.json``): per cell,
each init's accuracy over seeds and, against random, the paired difference with its
verdict, power and probability of improvement (:mod:`initbench.comparison.stats`).

A *run* is one result row of ``compare_run``: ``{"protocol", "init", "seed",
"label_fraction", "accuracy", "macro_f1", "train_images", "labelled_subset", "per_class",
"test_predictions", ...}``. A *cell* is one protocol x label fraction x init, over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from initbench.comparison import stats
from initbench.comparison.grid import PROTOCOLS, REFERENCE, fraction_key


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _sig(value: float) -> float:
    """4 significant digits: p-values keep their size when small."""
    return float(f"{value:.4g}")


def _index(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str, float, int], dict]:
    table: dict[tuple[str, str, float, int], dict] = {}
    for row in results:
        key = (row["protocol"], row["init"], float(row["label_fraction"]), int(row["seed"]))
        if key in table:
            raise ValueError(f"run {key} appears twice")
        table[key] = row
    return table


def _runs(
    table: dict, protocol: str, init: str, fraction: float, seeds: Sequence[int]
) -> list[dict]:
    runs = []
    for seed in seeds:
        key = (protocol, init, float(fraction), int(seed))
        if key not in table:
            raise ValueError(f"no result for protocol={protocol} init={init} "
                             f"label_fraction={fraction:g} seed={seed}; run `dvc repro`")  # fmt: skip
        runs.append(table[key])
    return runs


def _right(runs: Sequence[dict], test_labels: np.ndarray) -> np.ndarray:
    """bool ``(S, N)``: which test images each run got right."""
    for run in runs:
        if len(run.get("test_predictions", ())) != len(test_labels):
            raise ValueError(
                f"the {run['protocol']} run of init {run['init']}, seed {run['seed']}, label "
                f"fraction {run['label_fraction']:g} holds no predictions for the "
                f"{len(test_labels)} test images; run `dvc repro` to re-run it"
            )
    return np.asarray([run["test_predictions"] for run in runs]) == test_labels[None, :]


def labelled_subsets(
    results: Sequence[dict[str, Any]], label_fractions: Sequence[float], train_size: int
) -> dict[str, Any]:
    """The labelled subset of each label fraction and seed, checked to be the same for every
    init and protocol (the pairing).

    Returns:
        ``{fraction_key: {"images", "realised_fraction", "seeds": {seed: {"sha256",
        "per_class"}}}}``.

    Raises:
        ValueError: two runs of one seed and fraction trained on different subsets.
    """
    out: dict[str, Any] = {}
    for fraction in label_fractions:
        seeds: dict[str, dict[str, Any]] = {}
        owner: dict[str, dict] = {}
        for row in results:
            if float(row["label_fraction"]) != float(fraction):
                continue
            seed, subset = str(row["seed"]), {"sha256": row["labelled_subset"],
                                              "per_class": row["per_class"]}  # fmt: skip
            if seeds.setdefault(seed, subset) != subset:
                first = owner[seed]
                raise ValueError(
                    f"runs are not paired: at seed {seed}, label fraction {fraction:g}, the "
                    f"{row['protocol']} run of {row['init']} and the {first['protocol']} run of "
                    f"{first['init']} trained on different labelled subsets; run `dvc repro`"
                )
            owner.setdefault(seed, row)
        images = sum(next(iter(seeds.values()))["per_class"]) if seeds else 0
        out[fraction_key(fraction)] = {"images": images,
                                       "realised_fraction": _round(images / train_size),
                                       "seeds": dict(sorted(seeds.items(), key=lambda kv: int(kv[0])))}  # fmt: skip
    return out


def majority_class(train_labels: np.ndarray, test_labels: np.ndarray) -> dict[str, Any]:
    """What always answering the most common train class scores on test: the reference line
    an imbalanced folder needs (accuracy rewards it, macro-F1 does not).

    Returns:
        ``{"label", "accuracy", "macro_f1"}``.
    """
    from sklearn.metrics import f1_score

    label = int(np.bincount(train_labels).argmax())
    predicted = np.full_like(test_labels, label)
    return {"label": label, "accuracy": _round(float(np.mean(test_labels == label))),
            "macro_f1": _round(float(f1_score(test_labels, predicted, average="macro",
                                              labels=np.unique(np.concatenate(
                                                  [train_labels, test_labels])))))}  # fmt: skip


def _difference(init_runs: list[dict], reference_runs: list[dict], test_labels: np.ndarray,
                margin: float) -> tuple[stats.PairedDifference, dict[str, Any]]:  # fmt: skip
    right, reference = _right(init_runs, test_labels), _right(reference_runs, test_labels)
    diff = stats.paired_difference(right, reference)
    return diff, {"p": stats.t_test(diff.mean, diff.se, diff.df),
                  "tost_p": stats.tost(diff.mean, diff.se, diff.df, margin),
                  **stats.improvement(right, reference)}  # fmt: skip


def summarize(
    results: Sequence[dict[str, Any]],
    test_labels: np.ndarray,
    inits: Sequence[str],
    seeds: Sequence[int],
    label_fractions: Sequence[float],
    margin: float,
    correction: str,
    protocols: Sequence[str] = PROTOCOLS,
) -> dict[str, Any]:
    """Aggregate run results into the summary (``reports/compare.json``).

    Returns:
        ``{"family": {...}, "cells": {protocol: {fraction_key: {init: cell}}}}``. ``family``
        holds ``tests`` (the number of init-vs-random tests, those with 2 or more seeds),
        ``correction``, ``confidence``, ``margin``, ``power`` and ``planning_alpha``. A
        cell holds ``mean``, ``std``, ``n``, ``ci95_low``, ``ci95_high`` of test accuracy
        over seeds, ``macro_f1`` (mean) and, for runs that record one, ``plateau`` (``runs``
        and the seeds ``not_reached``); every init but random also ``vs_random``: the
        paired difference ``diff``, its standard error parts ``se_seeds`` and ``se_test``,
        ``df``, ``p`` and ``p_adjusted``, the interval ``low``/``high`` at ``confidence``,
        ``tost_p`` and ``tost_p_adjusted``, ``verdict`` and ``qualifier``, the probability
        of improvement, ``seed_sd``, ``minimum_detectable`` and ``seeds_to_decide``.

    Raises:
        ValueError: a run is missing, present twice or holds no test predictions, naming
            it; ``random`` is not among ``inits``; ``correction`` is unknown.
    """
    if REFERENCE not in inits:
        raise ValueError(f"inits {list(inits)} must include {REFERENCE!r}, the reference")
    alpha = 1 - stats.CONFIDENCE
    table = _index(results)
    cells: dict[str, Any] = {}
    tested: list[tuple[dict[str, Any], stats.PairedDifference, dict[str, Any]]] = []
    for protocol in protocols:
        cells[protocol] = {}
        for fraction in label_fractions:
            reference_runs = _runs(table, protocol, REFERENCE, fraction, seeds)
            cell: dict[str, Any] = {}
            for init in inits:
                runs = _runs(table, protocol, init, fraction, seeds)
                cell[init] = {k: _round(v) if k != "n" else v for k, v in
                              stats.t_interval([r["accuracy"] for r in runs]).items()}  # fmt: skip
                cell[init]["macro_f1"] = _round(float(np.mean([r["macro_f1"] for r in runs])))
                if all("plateau" in r for r in runs):
                    cell[init]["plateau"] = {
                        "runs": len(runs),
                        "not_reached": [r["seed"] for r in runs if not r["plateau"]["reached"]],
                    }
                if init != REFERENCE:
                    diff, tests = _difference(runs, reference_runs, test_labels, margin)
                    cell[init]["vs_random"] = {}
                    tested.append((cell[init]["vs_random"], diff, tests))
            cells[protocol][fraction_key(fraction)] = cell
    family = [i for i, (_, diff, _) in enumerate(tested) if diff.seeds >= 2]
    planning_alpha = alpha / max(len(family), 1) if correction == "holm" else alpha
    p_adjusted = dict(zip(family, stats.adjust([tested[i][2]["p"] for i in family], correction),
                          strict=True))  # fmt: skip
    tost_adjusted = dict(zip(family, stats.adjust([tested[i][2]["tost_p"] for i in family],
                                                  correction), strict=True))  # fmt: skip
    for i, (out, diff, tests) in enumerate(tested):
        out |= {"diff": _round(diff.mean), "se_seeds": _round(None if diff.var_seeds is None
                                                              else diff.var_seeds**0.5),
                "se_test": _round(diff.var_test**0.5), "seed_sd": _round(diff.seed_sd)}  # fmt: skip
        if diff.seeds < 2:
            out |= {"verdict": stats.TOO_FEW, "qualifier": None}
            continue
        low, high, confidence = stats.interval(diff.mean, diff.se, diff.df, tests["p"],
                                               p_adjusted[i], alpha)  # fmt: skip
        verdict, qualifier = stats.verdict(low, high, tost_adjusted[i], margin, alpha)
        out |= {
            "df": _round(diff.df, 2), "p": _sig(tests["p"]), "p_adjusted": _sig(p_adjusted[i]),
            "low": _round(low), "high": _round(high), "confidence": _round(confidence),
            "tost_p": _sig(tests["tost_p"]), "tost_p_adjusted": _sig(tost_adjusted[i]),
            "verdict": verdict, "qualifier": qualifier,
            "minimum_detectable": _round(stats.minimum_detectable(
                diff.seed_sd, diff.var_test, diff.seeds, diff.images, planning_alpha)),
            "seeds_to_decide": stats.seeds_to_decide(diff.seed_sd, diff.var_test, diff.images,
                                                     margin, planning_alpha),
        } | {k: _round(v) if isinstance(v, float) else v for k, v in tests.items()
             if k not in ("p", "tost_p")}  # fmt: skip
    return {"family": {"tests": len(family), "correction": correction,
                       "confidence": stats.CONFIDENCE, "margin": margin, "power": stats.POWER,
                       "planning_alpha": _round(planning_alpha)},
            "cells": cells}  # fmt: skip
