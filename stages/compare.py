"""Stage compare: every run of the comparison -> metrics, a markdown report and charts."""

import argparse
import itertools
import json
from pathlib import Path

from initbench.comparison.budget import read_searches
from initbench.comparison.report import (
    cell_metrics,
    chart_rows,
    curve_rows,
    report_markdown,
)
from initbench.comparison.runs import collect_runs, pretraining_reports
from initbench.comparison.settings import TRAINED_INITS, settings
from initbench.comparison.summary import labelled_subsets, majority_class, summarize
from initbench.core.cli import run
from initbench.core.errors import InitbenchError
from initbench.core.files import write_bytes, write_json, write_text
from initbench.data.dataset import load_dataset
from initbench.params import load_params
from initbench.views.charts import render_png

CHARTS = ("accuracy", "curves")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--runs", required=True, help="folder of compare_run results (JSON)")
    parser.add_argument("--pretraining", required=True,
                        help="folder of the init checkpoints and their reports")  # fmt: skip
    parser.add_argument("--budget-search",
                        help="folder of the finetune_budget stages' search records")  # fmt: skip
    parser.add_argument("--metrics", required=True, help="folder: one metrics file a cell (JSON)")
    parser.add_argument("--summary", required=True, help="every cell's statistics (JSON)")
    parser.add_argument("--report", required=True, help="markdown report")
    parser.add_argument("--chart", nargs=4, action="append", required=True,
                        metavar=("NAME", "DATA", "TEMPLATE", "PNG"),
                        help=f"one chart ({' or '.join(CHARTS)}): its data (JSON) to write, "
                             "its DVC template to read, its PNG to write")  # fmt: skip
    params = load_params()
    args = parser.parse_args()
    charts = {name: paths for name, *paths in args.chart}
    if sorted(charts) != sorted(CHARTS):
        parser.error(f"--chart must be given once for each of {', '.join(CHARTS)}")
    c = params.compare
    grid = set(itertools.product(c.inits, c.seeds, c.finetune_seeds, c.label_fractions))
    rows = collect_runs(args.runs, grid)
    data = load_dataset(args.dataset)
    train, test = data.splits["train"].labels.numpy(), data.splits["test"].labels.numpy()
    try:
        summary = summarize(rows, test, c.inits, c.seeds, c.label_fractions, c.margin,
                            c.correction, finetune_seeds=c.finetune_seeds)  # fmt: skip
        subsets = labelled_subsets(rows, c.label_fractions, len(train))
    except ValueError as exc:
        raise InitbenchError(f"{args.runs}: {exc}") from None
    trained = [i for i in c.inits if i in TRAINED_INITS]
    pretraining = pretraining_reports(args.pretraining, trained, c.seeds)
    runs = list(itertools.product(c.seeds, c.finetune_seeds))
    searches = (read_searches(args.budget_search, runs, c.label_fractions)
                if args.budget_search else None)  # fmt: skip
    majority = majority_class(train, test)
    majority["name"] = data.classes[majority["label"]]
    for name, cell in cell_metrics(summary, c.label_fractions).items():
        write_json(Path(args.metrics) / name, cell)
    write_json(args.summary, summary | {"labelled_subsets": subsets, "majority_class": majority})
    write_text(args.report, report_markdown(summary, c.label_fractions, subsets, majority,
                                            settings(params, data, rows, pretraining,
                                                     searches)))  # fmt: skip
    chart_data = {"accuracy": chart_rows(summary, c.label_fractions),
                  "curves": curve_rows([r for r in rows if r["protocol"] == "finetune"])}  # fmt: skip
    for name, (data_path, template_path, png_path) in charts.items():
        write_json(data_path, chart_data[name])
        template = json.loads(Path(template_path).read_text())
        write_bytes(png_path, render_png(template, chart_data[name]))
    print(f"compare: {len(rows)} runs -> {args.metrics}/, {args.summary}, {args.report}, "
          + ", ".join(png for _, _, png in charts.values()))  # fmt: skip


if __name__ == "__main__":
    run(main)
