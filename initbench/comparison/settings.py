"""The report's settings section: which data, seeds, budgets and models produced the
comparison, with each budget's plateau check and the pretraining compute per method (in
steps and images; the wall time, which depends on the machine, is in reports/timing.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from initbench.comparison import stats
from initbench.comparison.grid import run_label
from initbench.data.dataset import ArrayData
from initbench.params import FinetuneParams, Params

#: Pretraining reports that carry a budget: ``artifacts/init/<strategy>/seed<S>.json``.
TRAINED_INITS = {"autoencoder": "train MSE", "simclr": "NT-Xent"}


def _seeds(seeds: Sequence[Any]) -> str:
    return ", ".join(map(str, seeds))


def pretraining_line(strategy: str, reports: dict[int, dict[str, Any]], params: Params) -> str:
    """One method's pretraining compute and plateau checks over seeds: steps, images seen
    (pairs of views for SimCLR), whether the budget grew until the loss was flat
    (``<method>.until_plateau``) and which seeds ended still falling, with the command
    that gives a longer budget."""
    p = getattr(params, strategy)
    unit = "pairs of views" if strategy == "simclr" else "images"
    # grown_budget grows only a cap above the floor: a run at or under its cap grew
    grown = p.until_plateau and max(r["steps"] for r in reports.values()) <= p.max_steps
    if len({(r["steps"], r["images_seen"]) for r in reports.values()}) == 1:
        first = next(iter(reports.values()))
        compute = f"{first['steps']:,} steps, {first['images_seen']:,} {unit} a seed"
    else:
        compute = "; ".join(f"seed {s}: {r['steps']:,} steps, {r['images_seen']:,} {unit}"
                            for s, r in reports.items())  # fmt: skip
    line = (compute + (f" (grown until flat, at most {p.max_steps:,}; {strategy}.until_plateau)"
                       if grown else "") + f"; {TRAINED_INITS[strategy]} ")  # fmt: skip
    open_seeds = [s for s, r in reports.items() if not r["plateau"]["reached"]]
    monitor = knn_monitor_clause(reports, params.compare.margin)
    if grown:
        longer = f"`dvc exp run -S {strategy}.max_steps={p.max_steps * 2}`"
    else:
        longer = f"`dvc exp run -S {strategy}.until_plateau=true` (it grows until flat)"
    if not open_seeds:
        line += f"at a plateau at every seed ({_seeds(reports)})"
        # The loss is flat, so growing on it would stop at once; the monitor reads labels,
        # so it sets no budget: a fixed, longer one is the command.
        fixed = f"`dvc exp run -S {strategy}.epochs={p.epochs * 4}`"
        return line + (f"; but {monitor}: a longer budget is {fixed}" if monitor else "")
    worst = max((reports[s]["plateau"] for s in open_seeds), key=lambda p: abs(p["change"]))
    return line + (
        f"NOT at a plateau at seed(s) {_seeds(open_seeds)} (over the last third it still "
        f"changed by up to {worst['change']:+.3g}, against noise {worst['noise']:.3g})"
        + (f"; {monitor}" if monitor else "")
        + f": {'max_steps reached' if grown else 'a short default'}; a longer "
        f"budget is {longer}"
    )


def budget_clause(
    f: FinetuneParams, steps: dict[float, int], searches: Sequence[dict[str, Any]] | None
) -> str:
    """How the fine-tune budgets were set and what they are, per label fraction and seed:
    grown until the seed's random-init train loss was at a plateau (``searches``, the
    ``finetune_budget`` stages' records, :func:`initbench.comparison.budget.read_searches`),
    else ``max(epochs, min_steps)`` (``steps``: the rows')."""
    floor = f"max({f.epochs} epochs, {f.min_steps} steps)"
    runs = [
        (c["seed"], c["finetune_seed"], r) for c in searches or [] for r in c["budgets"].values()
    ]
    if not any(r["reached"] is not None for *_, r in runs):
        return f"{floor}: " + ", ".join(
            f"{steps[x]:,} steps at {x * 100:g}%" for x in sorted(steps)
        )
    per_fraction = []
    for x in sorted({r["label_fraction"] for *_, r in runs}):
        cells = [f"{r['steps']:,} (seed {run_label(s, ft)}"
                 + ("" if r["reached"] is not False else ", max_steps: NOT at a plateau") + ")"
                 for s, ft, r in runs if r["label_fraction"] == x]  # fmt: skip
        per_fraction.append(f"{x * 100:g}%: " + ", ".join(cells) + " steps")
    return (
        f"budgets grown from {floor}, at each seed, until random init's train loss on that "
        "seed's labelled subset passed the plateau check at two checks in a row, at most "
        f"{f.max_steps:,} steps (finetune.until_plateau, finetune.max_steps), then the same "
        "for every init of the seed: " + "; ".join(per_fraction)
    )


def knn_monitor_clause(reports: dict[int, dict[str, Any]], margin: float) -> str:
    """What SimCLR's kNN monitor (``knn_monitor`` of its reports: the initial encoder's kNN
    val accuracy at step 0, then each probe's during training) says of the budget, when it
    moved by more than ``margin`` (accuracy, 0..1) between its last two probes during
    training at some seed: the largest such change, in points, and its seed. Empty when no
    report has two probes during training (a run of one round has one) or none moved that
    much: the loss's own plateau check then stands alone."""
    changes = {seed: r["knn_monitor"][-1]["accuracy"] - r["knn_monitor"][-2]["accuracy"]
               for seed, r in reports.items() if len(r.get("knn_monitor", ())) >= 3}  # fmt: skip
    moved = {seed: change for seed, change in changes.items() if abs(change) > margin}
    if not moved:
        return ""
    seed = max(moved, key=lambda s: abs(moved[s]))
    first, last = reports[seed]["knn_monitor"][-2], reports[seed]["knn_monitor"][-1]
    return (
        f"its kNN val accuracy (a monitor) still moved by {moved[seed] * 100:+.1f} "
        f"points between steps {first['step']:,} and {last['step']:,} (seed {seed}; "
        f"{len(moved)} of {len(changes)} seeds beyond the ±{margin * 100:g}-point margin)"
    )


def settings(
    params: Params,
    data: ArrayData,
    rows: Sequence[dict[str, Any]],
    pretraining: dict[str, dict[int, dict[str, Any]]],
    searches: Sequence[dict[str, Any]] | None = None,
) -> list[tuple[str, str]]:
    """``(name, value)`` lines for the report.

    Args:
        rows: the runs (fine-tune step counts per label fraction, probe C).
        pretraining: ``{strategy: {seed: report}}`` of the methods in
            :data:`TRAINED_INITS` that the comparison includes.
        searches: the fine-tune budgets' search records
            (:func:`initbench.comparison.budget.read_searches`), when they were set.
    """
    c, f, a, s, lp = (params.compare, params.finetune, params.autoencoder, params.simclr,
                      params.linear_probe)  # fmt: skip
    steps = {r["label_fraction"]: r["steps"] for r in rows if "steps" in r}
    chosen = sorted({r["C"] for r in rows if "C" in r})
    sizes = {name: len(split) for name, split in data.splits.items()}
    lines = [
        ("dataset", f"{sum(sizes.values()):,} images, {len(data.classes)} classes, "
                    f"{data.image_size}x{data.image_size} px, {data.channels} channel(s); "
                    f"split {sizes} from data.split_seed={params.data.split_seed}"),
        ("seeds", f"{c.seeds}; each seed re-runs pretraining and draws the label subset, head "
                  "init, data order, augmentation and dropout masks (a fine-tune seed above 0 "
                  "draws its own), so the spread covers all of them; the split and test images "
                  "are the same for every run"),
        ("fine-tune seeds", f"{c.finetune_seeds} (compare.finetune_seeds); " + (
            "one fine-tune and probe of each checkpoint" if len(c.finetune_seeds) == 1 else
            f"{len(c.finetune_seeds)} fine-tunes and probes of each checkpoint, each drawing "
            "the label subset, head init, data order, augmentation and dropout masks anew from "
            "(seed, fine-tune seed); a seed's accuracy is their mean")),
        ("statistics", f"margin ±{c.margin * 100:g} points (compare.margin), correction "
                       f"{c.correction} (compare.correction), family-wise confidence "
                       f"{stats.CONFIDENCE:.0%}, power {stats.POWER:.0%} for planning; "
                       "labelled-subset hashes per seed in reports/compare.json"),
        ("fine-tune", f"Adam lr {f.lr}, batch {f.batch_size}, " + budget_clause(f, steps, searches)
                      + ("; random crop and flip of every batch (finetune.augment)" if f.augment
                         else "; no augmentation (finetune.augment: false)")
                      + "; final weights tested (no selection on val)"),
        ("linear probe", f"logistic regression (L-BFGS, max_iter {lp.max_iter}) on standardized "
                         "features of the frozen encoder, after precise BatchNorm on the train "
                         f"images; C from {lp.Cs} by {lp.cv_folds}-fold cross-validation on each "
                         "run's labelled subset (never test labels): chosen "
                         + (", ".join(f"{x:g}" for x in chosen) or "-")),
        ("pretraining", f"autoencoder max({a.epochs} epochs, {a.min_steps} steps), batch "
                        f"{a.batch_size}; SimCLR max({s.epochs} epochs, {s.min_steps} steps), "
                        f"batch {s.batch_size}, temperature {s.temperature}; k-means "
                        f"{params.kmeans.clusters} conv1 filters, no gradient steps"),
    ]  # fmt: skip
    lines += [(f"{name} compute", pretraining_line(name, reports, params))
              for name, reports in pretraining.items()]  # fmt: skip
    lines.append(("wall time", "per method and seed in reports/timing.md, which each stage "
                               "updates as it finishes; it depends on the machine, so it is "
                               "kept out of this report, whose bytes do not"))  # fmt: skip
    lines.append(("model", f"conv blocks {params.model.channels}, dropout "
                           f"{params.model.dropout}, head {params.model.hidden} units"))  # fmt: skip
    return lines
