"""Aggregating the comparison: per-cell statistics, paired differences against random,
verdicts, the markdown report and the chart data. Pure functions on plain dicts.

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
PROTOCOL_NAMES = {"finetune": "Fine-tune", "linear_probe": "Linear probe"}
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


def fill_chart(template: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A DVC plot template (Vega-Lite with ``"<DVC_METRIC_DATA>"`` as its data values)
    filled with ``rows``, ready to render. The templates here use no other anchor.

    Raises:
        ValueError: the template has no data anchor.
    """
    filled = _replace(template, rows)
    if filled == template:
        raise ValueError('the chart template has no "<DVC_METRIC_DATA>" anchor')
    return filled


def _replace(node: Any, rows: list[dict[str, Any]]) -> Any:
    if node == "<DVC_METRIC_DATA>":
        return rows
    if isinstance(node, dict):
        return {k: _replace(v, rows) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, rows) for v in node]
    return node
