"""The comparison as people read it: the markdown report, the metrics files ``dvc metrics``
tabulates, and the rows of its charts. Pure functions on the summary of
:mod:`initbench.comparison.stats`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from initbench.comparison.stats import REFERENCE, _round, fraction_key
from initbench.data.dataset import ArrayData
from initbench.params import Params

PROTOCOL_NAMES = {"finetune": "Fine-tune", "linear_probe": "Linear probe"}


def cell_file(protocol: str, fraction: float) -> str:
    """``("linear_probe", 0.01) -> "linear_probe_1%.json"``: one comparison cell's metrics file."""
    return f"{protocol}_{fraction * 100:g}%.json"


def cell_metrics(
    summary: dict[str, Any], label_fractions: Sequence[float]
) -> dict[str, dict[str, float | None]]:
    """The comparison as ``dvc metrics show`` tabulates it in 120 columns: one file a cell
    (:func:`cell_file`), one row in the table, the same keys in each.

    Returns:
        ``{file name: {init: mean test accuracy, ..., "ci95": half-width}}``, where
        ``ci95`` is the half-width of the widest 95% confidence interval of a paired
        difference to random in that cell: two inits' means closer than about this are
        within noise. ``None`` with fewer than 2 seeds. Per-init intervals and verdicts are
        in the full summary (:func:`summarize`, ``reports/compare.json``).
    """
    out = {}
    for protocol, cells in summary.items():
        for fraction in label_fractions:
            cell = cells[fraction_key(fraction)]
            widths = [
                (c["diff_ci95_high"] - c["diff_ci95_low"]) / 2
                for c in cell.values()
                if c.get("diff_ci95_high") is not None and c.get("diff_ci95_low") is not None
            ]
            row = {init: c["mean"] for init, c in cell.items()}
            out[cell_file(protocol, fraction)] = row | {
                "ci95": _round(max(widths)) if widths else None
            }
    return out


def chart_rows(summary: dict[str, Any], label_fractions: Sequence[float]) -> list[dict[str, Any]]:
    """One row per protocol x init x fraction for the accuracy-vs-label-fraction chart:
    ``protocol`` (display name), ``init``, ``label_fraction``, ``mean``, ``ci95_low``,
    ``ci95_high`` (bounds fall back to the mean when there is one seed)."""
    rows = []
    for protocol, by_fraction in summary.items():
        for fraction in label_fractions:
            for init, cell in by_fraction[fraction_key(fraction)].items():
                low, high = cell["ci95_low"], cell["ci95_high"]
                rows.append({"protocol": PROTOCOL_NAMES.get(protocol, protocol), "init": init,
                             "label_fraction": fraction, "mean": cell["mean"],
                             "ci95_low": cell["mean"] if low is None else low,
                             "ci95_high": cell["mean"] if high is None else high})  # fmt: skip
    return rows


def curve_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fine-tune learning curves of every run, for the plateau chart: one row per run and
    round with ``init``, ``seed``, ``label_fraction``, ``run`` (init and seed), ``step``,
    ``train_loss`` and ``val_accuracy``."""
    rows = []
    for result in results:
        for point in result.get("history", []):
            rows.append({"init": result["init"], "seed": result["seed"],
                         "label_fraction": result["label_fraction"],
                         "run": f"{result['init']} seed {result['seed']}",
                         "step": point["step"], "train_loss": point["train_loss"],
                         "val_accuracy": point["val_accuracy"]})  # fmt: skip
    return rows


def _fmt_cell(cell: dict[str, Any]) -> str:
    if cell["ci95_low"] is None:
        return f"{cell['mean']:.3f} (n=1)"
    return f"{cell['mean']:.3f} [{cell['ci95_low']:.3f}, {cell['ci95_high']:.3f}]"


def _fmt_diff(cell: dict[str, Any]) -> str:
    if cell["diff_ci95_low"] is None:
        return f"{cell['diff_vs_random']:+.3f}, {cell['verdict']}"
    return (f"{cell['diff_vs_random']:+.3f} [{cell['diff_ci95_low']:+.3f}, "
            f"{cell['diff_ci95_high']:+.3f}] **{cell['verdict']}**")  # fmt: skip


def report_markdown(
    summary: dict[str, Any],
    label_fractions: Sequence[float],
    train_images: dict[float, int],
    settings: Sequence[tuple[str, str]],
) -> str:
    """The comparison as markdown: per protocol, a table of test accuracy (mean and 95% CI
    over seeds) and one of paired differences against random with verdicts; then the
    settings that produced them.

    Args:
        train_images: labelled train images per label fraction.
        settings: ``(name, value)`` lines, in order.
    """
    headers = [f"{fraction * 100:g}% labels ({train_images[fraction]:,} images)"
               for fraction in label_fractions]  # fmt: skip
    lines = ["# Which init helps? The comparison", ""]
    lines += [
        "Test accuracy, mean and 95% confidence interval over seeds (Student's t). "
        "Differences are paired by seed (same label subset, head init and data order) and "
        f"taken against `{REFERENCE}`; the verdict is *better* or *worse* only when the "
        "difference's 95% CI excludes 0.",
        "",
    ]
    for protocol, by_fraction in summary.items():
        name = PROTOCOL_NAMES.get(protocol, protocol)
        inits = list(by_fraction[fraction_key(label_fractions[0])])
        lines += [f"## {name}", "", "| init | " + " | ".join(headers) + " |",
                  "|---|" + "---|" * len(headers)]  # fmt: skip
        for init in inits:
            cells = [_fmt_cell(by_fraction[fraction_key(f)][init]) for f in label_fractions]
            lines.append(f"| {init} | " + " | ".join(cells) + " |")
        lines += ["", f"{name}, paired difference against {REFERENCE}:", "",
                  "| init | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]  # fmt: skip
        for init in inits:
            if init == REFERENCE:
                continue
            cells = [_fmt_diff(by_fraction[fraction_key(f)][init]) for f in label_fractions]
            lines.append(f"| {init} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Settings", ""]
    lines += [f"- **{name}:** {value}" for name, value in settings]
    lines.append("")
    return "\n".join(lines)


def settings(
    params: Params, data: ArrayData, rows: Sequence[dict[str, Any]]
) -> list[tuple[str, str]]:
    """The report's settings section: ``(name, value)`` lines saying which data, seeds,
    budgets and models produced the comparison. ``rows`` are the runs (for the fine-tune
    step counts per label fraction)."""
    c, f, a, s, lp = (
        params.compare,
        params.finetune,
        params.autoencoder,
        params.simclr,
        params.linear_probe,
    )
    steps = {r["label_fraction"]: r["steps"] for r in rows if "steps" in r}
    sizes = {name: len(split) for name, split in data.splits.items()}
    return [
        ("dataset", f"{sum(sizes.values()):,} images, {len(data.classes)} classes, "
                    f"{data.image_size}x{data.image_size} px, {data.channels} channel(s); "
                    f"split {sizes} from data.split_seed={params.data.split_seed}"),
        ("seeds", f"{c.seeds}; each seed re-runs pretraining and draws the label subset, head "
                  "init, data order and dropout masks, so the spread covers all of them; the "
                  "split and test images are the same for every run"),
        ("fine-tune", f"Adam lr {f.lr}, batch {f.batch_size}, max({f.epochs} epochs, "
                      f"{f.min_steps} steps): " + ", ".join(
                          f"{steps[x]} steps at {x * 100:g}%" for x in sorted(steps))
                      + "; final weights tested (no selection on val)"),
        ("linear probe", f"logistic regression (L-BFGS, C={lp.C}, max_iter {lp.max_iter}) on "
                         "standardized features of the frozen encoder, after precise BatchNorm "
                         "on the train images"),
        ("pretraining", f"autoencoder max({a.epochs} epochs, {a.min_steps} steps), batch "
                        f"{a.batch_size}; SimCLR max({s.epochs} epochs, {s.min_steps} steps), "
                        f"batch {s.batch_size}, temperature {s.temperature}; k-means "
                        f"{params.kmeans.clusters} conv1 filters"),
        ("model", f"conv blocks {params.model.channels}, dropout {params.model.dropout}, "
                  f"head {params.model.hidden} units"),
    ]  # fmt: skip
