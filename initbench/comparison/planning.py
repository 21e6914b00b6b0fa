"""The report's *What would decide it*: for each cell without a verdict, the difference the
current runs detect, the seeds (and, with fine-tune repeats, the fine-tune seeds) that
would detect the margin, what they cost, and the commands that run them. Pure functions
on the summary of :func:`initbench.comparison.summary.summarize`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from initbench.comparison import stats
from initbench.comparison.grid import fraction_key

PROTOCOL_NAMES = {"finetune": "Fine-tune", "linear_probe": "Linear probe"}
#: Seed counts above this get no command in the report: not a practical next run.
MOST_SEEDS_SHOWN = 100
#: How many of the seed counts that would decide a cell get their command.
COMMANDS_SHOWN = 3


def points(value: float, sign: bool = True) -> str:
    """``0.0123 -> "+1.2"``: accuracy units as points."""
    return f"{value * 100:+.1f}" if sign else f"{value * 100:.1f}"


def margin_text(summary: dict[str, Any]) -> str:
    return f"±{summary['family']['margin'] * 100:g} pt"


def _list_command(key: str, current: Sequence[int], count: int) -> str:
    """The command that grows the list ``key`` from ``current`` to ``count`` entries,
    keeping every current one and adding the smallest unused integers."""
    grown, candidate = list(current), 0
    while len(grown) < count:
        if candidate not in grown:
            grown.append(candidate)
        candidate += 1
    return f"dvc exp run -S '{key}=[{','.join(map(str, grown))}]'"


def _repeats_cell(d: dict[str, Any], repeats: int) -> tuple[str, int | None]:
    """The cell's *fine-tune seeds to decide* column and the count, if any."""
    need = d.get("finetune_seeds_to_decide")
    if "sd_finetune" not in d:
        return "-", None
    if need is None:
        return "none at these seeds: more seeds", None
    return (f"{need:,}" if need > repeats else "-"), (need if need > repeats else None)


def _row(d: dict[str, Any], where: str, seeds: int, margin: str, repeats: int,
         counts: set[int], repeat_counts: set[int]) -> str:  # fmt: skip
    if "minimum_detectable" not in d:
        return (f"| {where} | {points(d['diff'])} | needs 2 or more seeds | - | - |"
                + (" - |" if repeats > 1 else ""))  # fmt: skip
    need = d["seeds_to_decide"]
    if need is None:
        decide = (f"no number of seeds: the test set alone (SE {points(d['se_test'], False)}"
                  f" pt) is too noisy for {margin}; a larger test set or a wider "
                  "`compare.margin` is needed")  # fmt: skip
        cost = "-"
    else:
        counts.add(need)
        decide = f"{need:,} seeds"
        cost = f"+{(need - seeds) / seeds:,.1f}x" if need > seeds else "-"
    row = (f"| {where} | {points(d['diff'])} | {points(d['minimum_detectable'], False)} | "
           f"{decide} | {cost} |")  # fmt: skip
    if repeats > 1:
        text, count = _repeats_cell(d, repeats)
        if count is not None:
            repeat_counts.add(count)
        row += f" {text} |"
    return row


def deciding_section(
    summary: dict[str, Any], fractions: Sequence[float], seeds: int, inits: int
) -> list[str]:
    """What would decide the cells that are not decided: a table, its reading, and the
    cheapest commands; empty when every cell is decided."""
    margin, family = margin_text(summary), summary["family"]
    repeats = family.get("finetune_seeds", 1)
    seed_list = family.get("seed_list", list(range(seeds)))
    repeat_list = family.get("finetune_seed_list", list(range(repeats)))
    each = "" if repeats == 1 else f" (each with {repeats} fine-tune seeds)"
    rows: list[str] = []
    counts: set[int] = set()
    repeat_counts: set[int] = set()
    for protocol, by_fraction in summary["cells"].items():
        for fraction in fractions:
            for init, cell in by_fraction[fraction_key(fraction)].items():
                d = cell.get("vs_random")
                if d is None or d["verdict"] not in (stats.INCONCLUSIVE, stats.TOO_FEW):
                    continue
                where = f"{PROTOCOL_NAMES.get(protocol, protocol)} {fraction * 100:g}%, {init}"
                rows.append(_row(d, where, seeds, margin, repeats, counts, repeat_counts))
    if not rows:
        return []
    low, high = stats.sd_interval(1.0, seeds) if seeds >= 2 else (None, None)
    lines = ["## What would decide it", "",
             f"Cells without a verdict. *Detectable now*: the smallest true difference the "
             f"current {seeds} seeds{each} detect with {family['power']:.0%} power; *seeds to "
             f"decide*: the seeds{each} that detect a difference of {margin} with that power. "
             "Both at the "
             f"per-test level {family['planning_alpha']:.4g} (Holm's strictest step), from each "
             "cell's spread of paired differences over seeds and its test-set noise.", ""]  # fmt: skip
    if low is not None:
        lines += [f"A spread estimated from {seeds} seeds is itself rough: its 95% interval runs "
                  f"from {low:.2f}x to {high:.2f}x the estimate, so read these counts as orders "
                  "of magnitude.", ""]  # fmt: skip
    header = "| cell | difference, pt | detectable now, pt | seeds to decide | added compute |"
    rule = "|---|---|---|---|---|"
    if repeats > 1:
        header += f" fine-tune seeds to decide at {seeds} seeds |"
        rule += "---|"
    lines += [header, rule, *rows, ""]
    runs = "once more" if repeats == 1 else f"{repeats} times"
    lines += [f"Each added seed runs every pretraining and the {inits} inits' fine-tunes and probes "
              f"{runs}, while DVC reuses the runs it has: N seeds add (N - "
              f"{seeds}) / {seeds} times this comparison's compute (its `make repro` time). "
              "The cheapest cells first:", ""]  # fmt: skip
    shown = sorted(n for n in counts if n <= MOST_SEEDS_SHOWN)[:COMMANDS_SHOWN]
    lines += [f"    {_list_command('compare.seeds', seed_list, n)}" for n in shown]
    if not shown:
        lines += [f"    (every count above is over {MOST_SEEDS_SHOWN} seeds: not a practical run)"]
    lines.append("")
    if repeats > 1:
        lines += ["*Fine-tune seeds to decide*: the fine-tune repeats of every checkpoint that, "
                  f"at the current {seeds} seeds, detect {margin} with that power (from the "
                  "pretraining and fine-tune parts of the spread, *Standard error* above); they "
                  "re-run no pretraining. The cheapest first:", ""]  # fmt: skip
        shown = sorted(n for n in repeat_counts if n <= MOST_SEEDS_SHOWN)[:COMMANDS_SHOWN]
        lines += [f"    {_list_command('compare.finetune_seeds', repeat_list, n)}" for n in shown]
        if not shown:
            lines += ["    (no practical count: more seeds, above, are what would decide)"]
        lines.append("")
    else:
        lines += ["Fine-tune repeats of every checkpoint (`compare.finetune_seeds`) re-run no "
                  "pretraining: with two or more, the report splits the spread into its "
                  "pretraining and fine-tune parts and says how many repeats would decide each "
                  "cell at the current seeds:", "",
                  f"    {_list_command('compare.finetune_seeds', repeat_list, 2)}", ""]  # fmt: skip
    return lines
