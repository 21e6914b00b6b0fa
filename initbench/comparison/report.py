"""The comparison as people read it: the markdown report, the metrics files ``dvc metrics``
tabulates, and the rows of its charts. Pure functions on the summary of
:func:`initbench.comparison.summary.summarize`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from initbench.comparison import stats
from initbench.comparison.grid import REFERENCE, fraction_key, run_label
from initbench.comparison.planning import PROTOCOL_NAMES, deciding_section, margin_text, points
from initbench.comparison.summary import _round


def cell_file(protocol: str, fraction: float) -> str:
    """``("linear_probe", 0.01) -> "linear_probe_1%.json"``: one comparison cell's metrics file."""
    return f"{protocol}_{fraction * 100:g}%.json"


def _differences(cell: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["vs_random"] for c in cell.values() if "vs_random" in c]


def cell_metrics(
    summary: dict[str, Any], label_fractions: Sequence[float]
) -> dict[str, dict[str, float | None]]:
    """The comparison as ``dvc metrics show`` tabulates it in 120 columns: one file a cell
    (:func:`cell_file`), one row in the table, the same keys in each.

    Returns:
        ``{file name: {init: mean test accuracy, ..., "ci95": half-width}}``, where
        ``ci95`` is the half-width of the widest interval of a paired difference to random
        in that cell (seeds and test set, family-wise 95%): two inits' means closer than
        about this are within noise. ``None`` with fewer than 2 seeds. Verdicts are in
        ``reports/compare.json`` and ``reports/compare.md``.
    """
    out = {}
    for protocol, cells in summary["cells"].items():
        for fraction in label_fractions:
            cell = cells[fraction_key(fraction)]
            widths = [(d["high"] - d["low"]) / 2 for d in _differences(cell) if "high" in d]
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
    for protocol, by_fraction in summary["cells"].items():
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
                         "run": f"{result['init']} seed "
                                f"{run_label(result['seed'], result.get('finetune_seed', 0))}",
                         "step": point["step"], "train_loss": point["train_loss"],
                         "val_accuracy": point["val_accuracy"]})  # fmt: skip
    return rows


def _verdict(d: dict[str, Any], margin: str) -> str:
    words = {stats.EQUIVALENT: f"equivalent within {margin}"}.get(d["verdict"], d["verdict"])
    if d.get("qualifier") == stats.BEYOND_MARGIN:
        words += f" by more than {margin}"
    elif d.get("qualifier") == stats.WITHIN_MARGIN:
        words += f", within {margin}"
    return f"**{words}**"


def _fmt_accuracy(cell: dict[str, Any]) -> str:
    text = (f"{cell['mean']:.3f} (n=1)" if cell["ci95_low"] is None
            else f"{cell['mean']:.3f} [{cell['ci95_low']:.3f}, {cell['ci95_high']:.3f}]")  # fmt: skip
    open_runs = cell.get("plateau", {}).get("not_reached")
    if open_runs:
        text += f" ⚠ {len(open_runs)} of {cell['plateau']['runs']} runs not at a plateau"
    return text


def _plateau_lines(by_fraction: dict[str, Any], fractions: Sequence[float]) -> list[str]:
    """Each label fraction's plateau check of the runs' train loss, naming runs that failed."""
    lines = []
    for fraction in fractions:
        cell = by_fraction[fraction_key(fraction)]
        checked = {i: c["plateau"] for i, c in cell.items() if "plateau" in c}
        if not checked:
            continue
        runs = sum(p["runs"] for p in checked.values())
        failed = [f"{i} seed(s) {', '.join(map(str, p['not_reached']))}"
                  for i, p in checked.items() if p["not_reached"]]  # fmt: skip
        reached = runs - sum(len(p["not_reached"]) for p in checked.values())
        worst = [p["worst"] for p in checked.values() if "worst" in p]
        furthest = max(worst, key=lambda w: abs(w["change"]) / max(w["noise"], 1e-12), default=None)
        lines.append(f"- {fraction * 100:g}% labels: {reached} of {runs} runs at a plateau"
                     + (f"; still changing: {'; '.join(failed)}" if failed else "")
                     + (f"; furthest from flat: a change of {furthest['change']:+.3g} over the "
                        f"last third against noise {furthest['noise']:.3g}" if furthest else ""))  # fmt: skip
    if not lines:
        return []
    return ["Plateau check of the fine-tunes (the train loss's drift over the last third of "
            "the budget against its step-to-step noise; a cell with runs not at a plateau is "
            "marked ⚠ above, and a longer budget, `finetune.max_steps` (or `min_steps` with "
            "`finetune.until_plateau: false`), may change it):", "",
            *lines, ""]  # fmt: skip


def _unsettled(cell: dict[str, Any], init: str) -> bool:
    """Whether runs of ``init`` or of the reference in ``cell`` ended before a plateau."""
    return any(cell[i].get("plateau", {}).get("not_reached") for i in (init, REFERENCE))


def _fmt_difference(d: dict[str, Any], margin: str) -> str:
    if "low" not in d:
        return f"{points(d['diff'])}, {d['verdict']}"
    return (f"{points(d['diff'])} [{points(d['low'])}, {points(d['high'])}] "
            f"{_verdict(d, margin)}")  # fmt: skip


def _fmt_noise(d: dict[str, Any]) -> str:
    seeds = "?" if d["se_seeds"] is None else points(d["se_seeds"], sign=False)
    text = f"seeds {seeds}, test set {points(d['se_test'], sign=False)}"
    if "sd_finetune" in d:
        text += (f"; one run's sd: pretraining {points(d['sd_pretraining'], sign=False)}, "
                 f"fine-tune {points(d['sd_finetune'], sign=False)}")  # fmt: skip
    return text


def _seed_count(d: dict[str, Any]) -> int:
    return d["seeds_better"] + d["seeds_worse"] + d["seeds_tied"]


def _fmt_improvement(d: dict[str, Any], unit: str) -> str:
    if "seeds_better" not in d:
        return "n/a"
    return (f"{d['seeds_better']} of {_seed_count(d)} {unit}; images "
            f"{d['images_init_only']:.1%} vs {d['images_reference_only']:.1%}")  # fmt: skip


def _table(headers: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    lines = ["| init | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
    return lines + [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows] + [""]


def _protocol_section(
    summary: dict[str, Any], protocol: str, fractions: Sequence[float], headers: list[str],
    majority: dict[str, Any],
) -> list[str]:  # fmt: skip
    by_fraction = summary["cells"][protocol]
    name = PROTOCOL_NAMES.get(protocol, protocol)
    keys = [fraction_key(f) for f in fractions]
    inits = list(by_fraction[keys[0]])
    others = [i for i in inits if i != REFERENCE]
    margin = margin_text(summary)
    repeats = summary["family"].get("finetune_seeds", 1)
    over = "seeds" if repeats == 1 else f"seeds, each the mean of its {repeats} fine-tune seeds"
    lines = [f"## {name}", "", f"Test accuracy, mean [95% CI] over {over}:", ""]
    lines += _table(headers, [(i, [_fmt_accuracy(by_fraction[k][i]) for k in keys]) for i in inits]
                    + [(f"majority class ({majority['name']})",
                        [f"{majority['accuracy']:.3f}"] * len(keys))])  # fmt: skip
    lines += _plateau_lines(by_fraction, fractions)
    lines += ["Macro-F1 (the mean over classes of F1: a model that answers one class scores "
              "low here however large that class), mean over seeds:", ""]  # fmt: skip
    lines += _table(headers, [(i, [f"{by_fraction[k][i]['macro_f1']:.3f}" for k in keys])
                              for i in inits]
                    + [(f"majority class ({majority['name']})",
                        [f"{majority['macro_f1']:.3f}"] * len(keys))])  # fmt: skip
    if not others:
        return lines
    diffs = {i: [by_fraction[k][i]["vs_random"] for k in keys] for i in others}
    unsettled = {i: [_unsettled(by_fraction[k], i) for k in keys] for i in others}
    lines += [f"Paired difference against {REFERENCE}, points of accuracy [interval], verdict"
              + (f" (⚠: runs of the init or of {REFERENCE} ended before a plateau, so the "
                 "difference is that of this budget and a longer one may change it)"
                 if any(any(u) for u in unsettled.values()) else "") + ":", ""]  # fmt: skip
    lines += _table(headers, [(i, [_fmt_difference(d, margin) + (" ⚠" if u else "")
                                   for d, u in zip(diffs[i], unsettled[i], strict=True)])
                              for i in others])  # fmt: skip
    lines += ["Standard error of the difference by source, points. *Test set*: what another "
              "sample of test images would change and more seeds would not; the per-image "
              "noise that differs from seed to seed averages out over seeds and is counted "
              "under *seeds*"
              + ("" if repeats == 1 else ". *One run's sd*: the spread of a single run's "
                 "difference between pretraining seeds and between fine-tune seeds of one "
                 "checkpoint (a seed's mean over its fine-tune seeds varies by pretraining² "
                 "+ fine-tune² / fine-tune seeds)") + ":", ""]  # fmt: skip
    lines += _table(headers, [(i, [_fmt_noise(d) for d in diffs[i]]) for i in others])
    unit = _unit(summary)
    lines += [f"Probability of improvement: {unit} on which the init beats random; test images "
              f"(over {unit}) only the init gets right vs only random gets right:", ""]  # fmt: skip
    lines += _table(headers, [(i, [_fmt_improvement(d, unit) for d in diffs[i]]) for i in others])
    return lines


def _unit(summary: dict[str, Any]) -> str:
    """What a probability of improvement counts: seeds, or runs with fine-tune repeats."""
    return "seeds" if summary["family"].get("finetune_seeds", 1) == 1 else "runs"


def _per_init_counts(summary: dict[str, Any]) -> list[str]:
    """``- **simclr**: better than random in 12 of 12 seed x cell pairs, worse in 0``, an init
    a line, over every cell of the report."""
    totals: dict[str, list[int]] = {}
    for by_fraction in summary["cells"].values():
        for cell in by_fraction.values():
            for init, c in cell.items():
                d = c.get("vs_random", {})
                if "seeds_better" in d:
                    total = totals.setdefault(init, [0, 0, 0])
                    for i, n in enumerate((d["seeds_better"], d["seeds_worse"], _seed_count(d))):
                        total[i] += n
    unit = _unit(summary)[:-1]
    return [f"- **{init}**: better than random in {better} of {n} {unit} x cell pairs, worse in "
            f"{worse}" for init, (better, worse, n) in totals.items()]  # fmt: skip


def report_markdown(
    summary: dict[str, Any],
    label_fractions: Sequence[float],
    subsets: dict[str, Any],
    majority: dict[str, Any],
    settings: Sequence[tuple[str, str]],
) -> str:
    """The comparison as markdown: how to read a verdict, then per protocol the accuracy,
    macro-F1 (each with the majority-class line), paired-difference, noise-by-source and
    probability-of-improvement tables; what would decide the open cells; the settings.

    Args:
        subsets: :func:`initbench.comparison.summary.labelled_subsets`.
        majority: ``{"name", "accuracy", "macro_f1"}`` of always answering the largest class.
        settings: ``(name, value)`` lines, in order.
    """
    family, margin = summary["family"], margin_text(summary)
    headers = [f"{f * 100:g}% labels ({subsets[fraction_key(f)]['images']:,} images, "
               f"{subsets[fraction_key(f)]['realised_fraction']:.1%})"
               for f in label_fractions]  # fmt: skip
    protocols = list(summary["cells"])
    first = summary["cells"][protocols[0]][fraction_key(label_fractions[0])]
    seeds = next(iter(first.values()))["n"]
    corrected = (f"Holm-adjusted over the {family['tests']} init-vs-random tests of this report "
                 "(`compare.correction: holm`), each interval at the level that matches its "
                 "adjusted test" if family["correction"] == "holm" else
                 f"not adjusted for the {family['tests']} tests of this report "
                 "(`compare.correction: none`): some verdicts among them are expected by chance")  # fmt: skip
    lines = ["# Which init helps? The comparison", "",
             f"Each init is compared with `{REFERENCE}` run by run: at one seed (and fine-tune "
             "seed) every init gets "
             "the same labelled subset, head init, data order and test images. The interval of "
             "a difference counts two sources of noise, the seeds (training) and the test set "
             "(which images were held out; more seeds never shrink it). Tests and intervals "
             f"are {corrected}.", "",
             f"- **better** / **worse**: the interval excludes 0; *by more than {margin}* when it "
             f"also excludes that side's margin (`compare.margin`), *within {margin}* when the "
             "equivalence test also holds (a real but small difference);",
             f"- **equivalent within {margin}**: two one-sided tests (TOST) put the difference "
             "inside the margin;",
             "- **inconclusive**: the runs support neither; *What would decide it* says what "
             "would.", ""]  # fmt: skip
    for protocol in protocols:
        lines += _protocol_section(summary, protocol, label_fractions, headers, majority)
    counts = _per_init_counts(summary)
    if counts:
        lines += ["## Across cells", "", *counts, ""]
    lines += deciding_section(summary, label_fractions, seeds, len(first))
    lines += ["## Settings", ""]
    lines += [f"- **{name}:** {value}" for name, value in settings]
    lines.append("")
    return "\n".join(lines)
