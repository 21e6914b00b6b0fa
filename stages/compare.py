"""Stage compare: every run of the comparison -> metrics, a markdown report and charts."""

import argparse
import json
from pathlib import Path

import vl_convert

from initbench.comparison.report import cell_metrics, chart_rows, curve_rows, report_markdown
from initbench.comparison.stats import summarize
from initbench.core.cli import run
from initbench.core.errors import InitbenchError
from initbench.core.files import write_bytes, write_json, write_text
from initbench.data.dataset import load_dataset
from initbench.params import load_params
from initbench.views.charts import fill_chart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--runs", required=True, help="folder of compare_run results (JSON)")
    parser.add_argument("--metrics", required=True, help="folder: one metrics file a cell (JSON)")
    parser.add_argument("--summary", required=True, help="every cell's statistics (JSON)")
    parser.add_argument("--report", required=True, help="markdown report")
    parser.add_argument("--plots", required=True, help="folder for chart data (JSON)")
    parser.add_argument("--templates", required=True, help="folder of the DVC chart templates")
    parser.add_argument("--figures", required=True, help="folder for the charts as PNG")
    args = parser.parse_args()
    params = load_params()
    c = params.compare
    grid = {(i, s, f) for i in c.inits for s in c.seeds for f in c.label_fractions}
    # Each compare_run output is a list of runs (a file of one run, as earlier versions
    # wrote, is read too). Runs outside today's grid (say, of a seed since dropped from
    # params) are left out; a run found in two files is an error.
    rows, found = [], {}
    for path in sorted(Path(args.runs).rglob("*.json")):
        loaded = json.loads(path.read_text())
        for row in [loaded] if isinstance(loaded, dict) else loaded:
            if (row["init"], row["seed"], row["label_fraction"]) not in grid:
                continue
            key = (row["protocol"], row["init"], row["seed"], row["label_fraction"])
            if key in found:
                raise InitbenchError(
                    f"{path} and {found[key]} both hold the {key[0]} run of init {key[1]}, "
                    f"seed {key[2]}, label fraction {key[3]:g}; delete the stale one (a "
                    "file no stage of dvc.yaml writes) and run `dvc repro` again"
                )
            found[key] = path
            rows.append(row)
    try:
        summary = summarize(rows, c.inits, c.seeds, c.label_fractions)
    except ValueError as exc:
        raise InitbenchError(f"{args.runs}: {exc}") from None
    data = load_dataset(args.dataset)
    n_train = {r["label_fraction"]: r["train_images"] for r in rows}
    steps = {r["label_fraction"]: r["steps"] for r in rows if "steps" in r}
    f, a, s, lp = params.finetune, params.autoencoder, params.simclr, params.linear_probe
    sizes = {name: len(split) for name, split in data.splits.items()}
    settings = [
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
    for name, cell in cell_metrics(summary, c.label_fractions).items():
        write_json(Path(args.metrics) / name, cell)
    write_json(args.summary, summary)
    write_text(args.report, report_markdown(summary, c.label_fractions, n_train, settings))
    charts = {"accuracy": chart_rows(summary, c.label_fractions),
              "curves": curve_rows([r for r in rows if r["protocol"] == "finetune"])}  # fmt: skip
    for name, chart in charts.items():
        write_json(Path(args.plots) / f"{name}.json", chart)
        template = json.loads((Path(args.templates) / f"compare_{name}.json").read_text())
        png = vl_convert.vegalite_to_png(fill_chart(template, chart), scale=2)
        write_bytes(Path(args.figures) / f"compare_{name}.png", png)
    print(f"compare: {len(rows)} runs -> {args.metrics}/, {args.summary}, {args.report}, "
          f"{args.figures}/")  # fmt: skip


if __name__ == "__main__":
    run(main)
