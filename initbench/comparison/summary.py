"""Aggregating the comparison's runs into its summary (``reports/compare.json``): per cell,
each init's accuracy over seeds and, against random, the paired difference with its
verdict, power and probability of improvement (:mod:`initbench.comparison.stats`).

A *run* is one result row of ``compare_run``: ``{"protocol", "init", "seed",
"finetune_seed", "label_fraction", "accuracy", "macro_f1", "train_images",
"labelled_subset", "per_class", "test_predictions", ...}``. A *cell* is one protocol x
label fraction x init, over seeds; with several fine-tune seeds a seed's runs are averaged
first, and their spread is split by level (:mod:`initbench.comparison.levels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from initbench.comparison import levels, stats
from initbench.comparison.grid import PROTOCOLS, REFERENCE, fraction_key, run_label


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _sig(value: float) -> float:
    """4 significant digits: p-values keep their size when small."""
    return float(f"{value:.4g}")


def _finetune_seed(row: dict[str, Any]) -> int:
    return int(row.get("finetune_seed", 0))  # rows of earlier versions: repeat 0


def _index(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str, float, int, int], dict]:
    table: dict[tuple[str, str, float, int, int], dict] = {}
    for row in results:
        key = (row["protocol"], row["init"], float(row["label_fraction"]), int(row["seed"]),
               _finetune_seed(row))  # fmt: skip
        if key in table:
            raise ValueError(f"run {key} appears twice")
        table[key] = row
    return table


def _runs(
    table: dict, protocol: str, init: str, fraction: float, seeds: Sequence[int],
    finetune_seeds: Sequence[int],
) -> list[list[dict]]:  # fmt: skip
    """The runs of one cell, ``[seed][finetune seed]``."""
    runs = []
    for seed in seeds:
        runs.append([])
        for repeat in finetune_seeds:
            key = (protocol, init, float(fraction), int(seed), int(repeat))
            if key not in table:
                raise ValueError(f"no result for protocol={protocol} init={init} "
                                 f"label_fraction={fraction:g} seed={seed} "
                                 f"finetune_seed={repeat}; run `dvc repro`")  # fmt: skip
            runs[-1].append(table[key])
    return runs


def _label(row: dict[str, Any]) -> str:
    return run_label(int(row["seed"]), _finetune_seed(row))


def _flat(runs: list[list[dict]]) -> list[dict]:
    return [run for repeats in runs for run in repeats]


def _right(runs: Sequence[dict], test_labels: np.ndarray) -> np.ndarray:
    """bool ``(R, N)``: which test images each run got right."""
    for run in runs:
        if len(run.get("test_predictions", ())) != len(test_labels):
            raise ValueError(
                f"the {run['protocol']} run of init {run['init']}, seed {run['seed']}, "
                f"fine-tune seed {_finetune_seed(run)}, label "
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
        ``{fraction_key: {"images", "realised_fraction", "seeds": {run: {"sha256",
        "per_class"}}}}``, ``run`` being :func:`initbench.comparison.grid.run_label`.

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
            seed = _label(row)
            subset = {"sha256": row["labelled_subset"], "per_class": row["per_class"]}
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
                                       "seeds": dict(sorted(seeds.items(), key=_label_order))}  # fmt: skip
    return out


def _label_order(item: tuple[str, Any]) -> tuple[int, ...]:
    return tuple(int(part) for part in item[0].split("/"))


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


def _difference(
    init_runs: list[list[dict]], reference_runs: list[list[dict]], test_labels: np.ndarray,
    margin: float,
) -> tuple[stats.PairedDifference, levels.Levels | None, dict[str, Any]]:  # fmt: skip
    """The paired difference on per-seed means over fine-tune seeds, the spread by level
    (``None`` with one fine-tune seed or one seed), and the tests."""
    seeds, repeats = len(init_runs), len(init_runs[0])
    right = _right(_flat(init_runs), test_labels)
    reference = _right(_flat(reference_runs), test_labels)
    by_seed = (right.reshape(seeds, repeats, -1).mean(axis=1)
               - reference.reshape(seeds, repeats, -1).mean(axis=1))  # fmt: skip
    diff = stats.variance_components(by_seed)
    split = None
    if seeds >= 2 and repeats >= 2:
        per_run = (right.mean(axis=1) - reference.mean(axis=1)).reshape(seeds, repeats)
        split = levels.nested_components(per_run)
    return diff, split, {"p": stats.t_test(diff.mean, diff.se, diff.df),
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
    finetune_seeds: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Aggregate run results into the summary (``reports/compare.json``). A seed's
    accuracy is its mean over ``finetune_seeds``.

    Returns:
        ``{"family": {...}, "cells": {protocol: {fraction_key: {init: cell}}}}``. ``family``
        holds ``tests`` (the number of init-vs-random tests, those with 2 or more seeds),
        ``correction``, ``confidence``, ``margin``, ``power``, ``planning_alpha``,
        ``finetune_seeds`` (their count), ``seed_list`` and ``finetune_seed_list``. A cell holds ``mean``, ``std``, ``n``,
        ``ci95_low``, ``ci95_high`` of test accuracy over seeds, ``macro_f1`` (mean) and,
        for runs that record one, ``plateau`` (``runs``, the runs ``not_reached``, as
        :func:`initbench.comparison.grid.run_label`, and the ``worst`` of those: its
        ``change`` and ``noise``); every init but random also ``vs_random``: the paired
        difference ``diff``, its standard error parts ``se_seeds`` and ``se_test``,
        ``df``, ``p`` and ``p_adjusted``, the interval ``low``/``high`` at ``confidence``,
        ``tost_p`` and ``tost_p_adjusted``, ``verdict`` and ``qualifier``, the probability
        of improvement (over runs), ``seed_sd``, ``minimum_detectable`` and
        ``seeds_to_decide``; with 2 or more fine-tune seeds also ``sd_pretraining`` and
        ``sd_finetune`` (one run's spread by level) and ``finetune_seeds_to_decide`` (at
        the current seeds; ``None`` when no number would).

    Raises:
        ValueError: a run is missing, present twice or holds no test predictions, naming
            it; ``random`` is not among ``inits``; ``correction`` is unknown.
    """
    if REFERENCE not in inits:
        raise ValueError(f"inits {list(inits)} must include {REFERENCE!r}, the reference")
    alpha = 1 - stats.CONFIDENCE
    table = _index(results)
    cells: dict[str, Any] = {}
    tested: list[tuple[dict[str, Any], stats.PairedDifference, levels.Levels | None,
                       dict[str, Any]]] = []  # fmt: skip
    for protocol in protocols:
        cells[protocol] = {}
        for fraction in label_fractions:
            reference_runs = _runs(table, protocol, REFERENCE, fraction, seeds, finetune_seeds)
            cell: dict[str, Any] = {}
            for init in inits:
                runs = _runs(table, protocol, init, fraction, seeds, finetune_seeds)
                flat = _flat(runs)
                per_seed = [float(np.mean([r["accuracy"] for r in repeats])) for repeats in runs]
                cell[init] = {k: _round(v) if k != "n" else v for k, v in
                              stats.t_interval(per_seed).items()}  # fmt: skip
                cell[init]["macro_f1"] = _round(float(np.mean([r["macro_f1"] for r in flat])))
                if all("plateau" in r for r in flat):
                    open_runs = [r for r in flat if not r["plateau"]["reached"]]
                    cell[init]["plateau"] = {"runs": len(flat),
                                             "not_reached": [_label(r) for r in open_runs]}  # fmt: skip
                    if open_runs:  # the run furthest from flat, drift over its noise
                        worst = max((r["plateau"] for r in open_runs),
                                    key=lambda p: abs(p["change"]) / max(p["noise"], 1e-12))  # fmt: skip
                        cell[init]["plateau"]["worst"] = {k: worst[k] for k in ("change", "noise")}
                if init != REFERENCE:
                    diff, split, tests = _difference(runs, reference_runs, test_labels, margin)
                    cell[init]["vs_random"] = {}
                    tested.append((cell[init]["vs_random"], diff, split, tests))
            cells[protocol][fraction_key(fraction)] = cell
    family = [i for i, (_, diff, _, _) in enumerate(tested) if diff.seeds >= 2]
    planning_alpha = alpha / max(len(family), 1) if correction == "holm" else alpha
    p_adjusted = dict(zip(family, stats.adjust([tested[i][3]["p"] for i in family], correction),
                          strict=True))  # fmt: skip
    tost_adjusted = dict(zip(family, stats.adjust([tested[i][3]["tost_p"] for i in family],
                                                  correction), strict=True))  # fmt: skip
    for i, (out, diff, split, tests) in enumerate(tested):
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
        if split is not None:
            out |= {"sd_pretraining": _round(split.pretraining**0.5),
                    "sd_finetune": _round(split.finetune**0.5),
                    "finetune_seeds_to_decide": levels.finetune_seeds_to_decide(
                        split, diff.seed_sd, len(finetune_seeds), diff.var_test, diff.seeds,
                        diff.images, margin, planning_alpha)}  # fmt: skip
    return {"family": {"tests": len(family), "correction": correction,
                       "confidence": stats.CONFIDENCE, "margin": margin, "power": stats.POWER,
                       "planning_alpha": _round(planning_alpha),
                       "finetune_seeds": len(finetune_seeds), "seed_list": list(seeds),
                       "finetune_seed_list": list(finetune_seeds)},
            "cells": cells}  # fmt: skip
