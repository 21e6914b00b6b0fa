"""Tests of the comparison's summary (initbench.comparison.summary), its report and metrics
(initbench.comparison.report) and the chart templates.

Runs are made from predictions: a run with accuracy ``a`` gets the first ``round(a * N)``
test images of its own order right, so paired differences and their noise are known.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import vl_convert

from initbench.comparison import report, stats
from initbench.comparison.grid import fraction_key
from initbench.comparison.summary import labelled_subsets, majority_class, summarize
from initbench.views import charts

TEMPLATES = Path(__file__).parents[1] / ".dvc" / "plots"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 400
LABELS = np.arange(N) % 4
INITS = ["random", "simclr", "kmeans"]


def _predictions(accuracy: float, order: np.ndarray) -> list[int]:
    """Right on the first ``round(accuracy * N)`` images of ``order``, wrong elsewhere."""
    right = np.zeros(N, bool)
    right[order[: round(accuracy * N)]] = True
    return np.where(right, LABELS, (LABELS + 1) % 4).tolist()


def _runs(
    accuracies: dict[str, list[float]], seeds: list[int], fraction: float,
    protocol: str = "finetune", shared_order: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """One run per init x seed: ``accuracies[init][i]`` at ``seeds[i]``. With
    ``shared_order`` every init at a seed gets images right in the same order (nested
    predictions: the better run is right wherever the worse one is)."""
    rows = []
    for init, values in accuracies.items():
        for seed, accuracy in zip(seeds, values, strict=True):
            salt = 0 if shared_order else 1 + INITS.index(init) if init in INITS else 99
            order = np.random.default_rng([seed, salt]).permutation(N)
            rows.append({"protocol": protocol, "init": init, "seed": seed,
                         "label_fraction": fraction, "accuracy": accuracy,
                         "macro_f1": accuracy - 0.01, "train_images": 40,
                         "labelled_subset": f"subset-{seed}-{fraction}", "per_class": [10] * 4,
                         "test_predictions": _predictions(accuracy, order)})  # fmt: skip
    return rows


def _summary(rows, seeds, fractions, protocols=("finetune", "linear_probe"), inits=INITS,
             correction="holm"):  # fmt: skip
    return summarize(rows, LABELS, inits, seeds, fractions, 0.01, correction, protocols)


SEEDS = [0, 1, 2]
FRACTIONS = [0.01, 0.1]
CASES = {
    # simclr +10 points at every seed, nested: better by more than the margin.
    ("finetune", 0.01): {"random": [0.50, 0.60, 0.55], "simclr": [0.60, 0.70, 0.65],
                         "kmeans": [0.50, 0.60, 0.55]},  # kmeans predicts as random does
    # simclr +-: inconclusive; kmeans identical to random: equivalent (no noise at all).
    ("finetune", 0.1): {"random": [0.70, 0.72, 0.74], "simclr": [0.75, 0.70, 0.74],
                        "kmeans": [0.70, 0.72, 0.74]},
    ("linear_probe", 0.01): {"random": [0.50, 0.52, 0.54], "simclr": [0.55, 0.50, 0.50],
                             "kmeans": [0.45, 0.47, 0.49]},  # kmeans -5 points: worse
    ("linear_probe", 0.1): {"random": [0.70, 0.72, 0.74], "simclr": [0.71, 0.73, 0.75],
                            "kmeans": [0.60, 0.70, 0.74]},
}  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    out = []
    for (protocol, fraction), values in CASES.items():
        out += _runs(values, SEEDS, fraction, protocol)
    return out


@pytest.fixture(scope="module")
def summary(rows) -> dict[str, Any]:
    return _summary(rows, SEEDS, FRACTIONS)


def _vs(summary, protocol, fraction, init):
    return summary["cells"][protocol][f"labels_{fraction * 100:g}%"][init]["vs_random"]


def test_summary_verdicts(summary):
    better = _vs(summary, "finetune", 0.01, "simclr")
    assert (better["verdict"], better["qualifier"]) == ("better", "beyond the margin")
    assert better["diff"] == pytest.approx(0.10) and better["low"] > 0.01
    same = _vs(summary, "finetune", 0.01, "kmeans")
    assert (same["verdict"], same["diff"], same["se_seeds"], same["se_test"]) == (
        "equivalent",
        0.0,
        0.0,
        0.0,
    )
    assert _vs(summary, "linear_probe", 0.01, "kmeans")["verdict"] == "worse"
    open_cell = _vs(summary, "finetune", 0.1, "simclr")
    assert open_cell["verdict"] == "inconclusive"
    assert open_cell["minimum_detectable"] > 0.01
    assert open_cell["seeds_to_decide"] is None or open_cell["seeds_to_decide"] > 3


def test_summary_adjusts_the_whole_family_with_holm(summary, rows):
    family = summary["family"]
    assert family["tests"] == 8  # 2 protocols x 2 fractions x 2 inits
    assert family["correction"] == "holm" and family["margin"] == 0.01
    assert family["planning_alpha"] == pytest.approx(0.05 / 8, abs=1e-6)
    diffs = [c["vs_random"] for p in summary["cells"].values() for cell in p.values()
             for c in cell.values() if "vs_random" in c]  # fmt: skip
    raw = [d["p"] for d in diffs]
    assert [d["p_adjusted"] for d in diffs] == pytest.approx(stats.adjust(raw, "holm"), rel=1e-3)
    for d in diffs:
        assert (d["low"] > 0 or d["high"] < 0) == (d["p_adjusted"] < 0.05)
    plain = _summary(rows, SEEDS, FRACTIONS, correction="none")
    assert all(c["vs_random"]["p_adjusted"] == c["vs_random"]["p"]
               for p in plain["cells"].values() for cell in p.values() for c in cell.values()
               if "vs_random" in c)  # fmt: skip


def test_summary_splits_the_noise_into_seeds_and_test_set():
    # Predictions drawn in each init's own order: the images each run gets right differ,
    # so the test set adds noise beyond the seeds.
    rows = _runs({"random": [0.60, 0.62, 0.64, 0.61], "simclr": [0.63, 0.64, 0.66, 0.65]},
                 [0, 1, 2, 3], 0.1, shared_order=False)  # fmt: skip
    out = _summary(rows, [0, 1, 2, 3], [0.1], ("finetune",), ["random", "simclr"])
    d = _vs(out, "finetune", 0.1, "simclr")
    right = np.array([[p == y for p, y in zip(r["test_predictions"], LABELS, strict=True)]
                      for r in rows])  # fmt: skip
    expected = stats.paired_difference(right[4:], right[:4])
    assert d["se_seeds"] == pytest.approx(expected.var_seeds**0.5, abs=1e-6)
    assert d["se_test"] == pytest.approx(expected.var_test**0.5, abs=1e-6)
    assert d["diff"] == pytest.approx(0.0275, abs=1e-6)
    assert d["seeds_better"] == 4 and d["p_seeds"] == 1.0


def test_summary_with_one_seed_has_the_test_set_part_and_no_verdict():
    rows = _runs({"random": [0.80], "simclr": [0.81]}, [7], 0.1, shared_order=False)
    out = _summary(rows, [7], [0.1], ("finetune",), ["random", "simclr"])
    d = _vs(out, "finetune", 0.1, "simclr")
    assert d["verdict"] == "too few seeds" and d["se_seeds"] is None and d["se_test"] > 0
    assert "low" not in d and out["family"]["tests"] == 0
    json.dumps(out, allow_nan=False)
    text = report.report_markdown(out, [0.1], labelled_subsets(rows, [0.1], 400),
                                  {"name": "c0", "accuracy": 0.25, "macro_f1": 0.1}, [])  # fmt: skip
    assert "+1.0, too few seeds" in text and "needs 2 or more seeds" in text


def test_summary_names_a_missing_run_and_a_run_without_predictions(rows):
    missing = [r for r in rows if not (r["init"] == "kmeans" and r["seed"] == 2
                                       and r["protocol"] == "linear_probe")]  # fmt: skip
    with pytest.raises(
        ValueError, match=r"protocol=linear_probe init=kmeans label_fraction=0\.01 seed=2"
    ):
        _summary(missing, SEEDS, FRACTIONS)
    bare = [dict(r) for r in rows]
    del bare[5]["test_predictions"]
    with pytest.raises(ValueError, match="holds no predictions for the 400 test images"):
        _summary(bare, SEEDS, FRACTIONS)
    with pytest.raises(ValueError, match="appears twice"):
        _summary([*rows, dict(rows[0])], SEEDS, FRACTIONS)
    with pytest.raises(ValueError, match="'random'"):
        summarize(rows, LABELS, ["simclr"], SEEDS, FRACTIONS, 0.01, "holm")


def test_summary_does_not_depend_on_the_order_of_the_runs(rows, summary):
    shuffled = list(rows)
    random.Random(0).shuffle(shuffled)
    assert _summary(shuffled, SEEDS, FRACTIONS) == summary


def test_labelled_subsets_record_the_realised_fraction_and_check_pairing(rows):
    out = labelled_subsets(rows, FRACTIONS, 400)
    assert out["labels_1%"]["images"] == 40 and out["labels_1%"]["realised_fraction"] == 0.1
    assert out["labels_1%"]["seeds"]["2"] == {"sha256": "subset-2-0.01", "per_class": [10] * 4}
    unpaired = [dict(r) for r in rows]
    unpaired[7]["labelled_subset"] = "another"
    with pytest.raises(ValueError, match=r"not paired: at seed 1, label fraction 0\.01"):
        labelled_subsets(unpaired, FRACTIONS, 400)


def test_majority_class_of_an_imbalanced_folder():
    # 500 images of one class, 10 of another (the field case): always answering the large
    # class scores 100 / 102 = 0.980 accuracy, and macro-F1 (2 * 0.980 / 1.980 + 0) / 2 = 0.495.
    train = np.array([0] * 400 + [1] * 8)
    test = np.array([0] * 100 + [1] * 2)
    out = majority_class(train, test)
    assert out == {"label": 0, "accuracy": pytest.approx(0.980392, abs=1e-6),
                   "macro_f1": pytest.approx(0.49505, abs=1e-5)}  # fmt: skip


def test_report_of_an_imbalanced_folder_shows_macro_f1_and_the_majority_line():
    labels = np.array([0] * 100 + [1] * 2)
    rows = []
    for init in ("random", "simclr"):
        for seed in (0, 1):
            rows.append({"protocol": "linear_probe", "init": init, "seed": seed,
                         "label_fraction": 0.5, "accuracy": 0.980392, "macro_f1": 0.49505,
                         "train_images": 204, "labelled_subset": f"s{seed}",
                         "per_class": [200, 4], "test_predictions": [0] * 102})  # fmt: skip
    out = summarize(rows, labels, ["random", "simclr"], [0, 1], [0.5], 0.01, "holm",
                    ("linear_probe",))  # fmt: skip
    majority = majority_class(np.array([0] * 400 + [1] * 8), labels) | {"name": "cat"}
    text = report.report_markdown(out, [0.5], labelled_subsets(rows, [0.5], 408), majority, [])
    lines = text.splitlines()
    assert "| random | 0.980 [0.980, 0.980] |" in lines
    assert "| random | 0.495 |" in lines  # macro-F1 tells the truth
    assert "| majority class (cat) | 0.980 |" in lines
    assert "| majority class (cat) | 0.495 |" in lines


def test_report_reads_in_the_four_verdicts_with_what_would_decide(summary, rows):
    subsets = labelled_subsets(rows, FRACTIONS, 400)
    majority = {"name": "c0", "accuracy": 0.25, "macro_f1": 0.1}
    text = report.report_markdown(summary, FRACTIONS, subsets, majority, [("seeds", "[0, 1, 2]")])
    lines = text.splitlines()
    assert lines[0] == "# Which init helps? The comparison"
    assert "Holm-adjusted over the 8 init-vs-random tests" in text
    header = "| init | 1% labels (40 images, 10.0%) | 10% labels (40 images, 10.0%) |"
    assert lines.count(header) == 2 * 5  # five tables a protocol
    assert "**better by more than ±1 pt**" in text
    assert "**equivalent within ±1 pt**" in text and "**worse" in text
    assert "**inconclusive**" in text
    assert "## What would decide it" in lines and "- **seeds:** [0, 1, 2]" in lines
    assert "its 95% interval runs from 0.52x to 6.28x the estimate" in text
    assert "| Fine-tune 10%, simclr |" in text
    assert "**simclr**: better than random in" in text
    order = [lines.index(h) for h in ("## Fine-tune", "## Linear probe", "## Across cells",
                                      "## What would decide it", "## Settings")]  # fmt: skip
    assert order == sorted(order)


def test_report_gives_the_exact_command_for_the_seeds_that_decide():
    # Paired differences +1, +4, +2.5 points (mean 2.5, sd 1.5): too much seed spread for
    # 3 seeds to decide.
    rows = _runs({"random": [0.60, 0.62, 0.64], "simclr": [0.61, 0.66, 0.665]}, SEEDS, 0.1)
    out = summarize(rows, LABELS, ["random", "simclr"], SEEDS, [0.1], 0.01, "holm", ("finetune",))
    d = _vs(out, "finetune", 0.1, "simclr")
    assert d["verdict"] == "inconclusive" and d["seed_sd"] == pytest.approx(0.015)
    need = stats.seeds_to_decide(d["seed_sd"], d["se_test"] ** 2, N, 0.01, 0.05)  # one test
    assert d["seeds_to_decide"] == need and 10 < need < 30
    text = report.report_markdown(out, [0.1], labelled_subsets(rows, [0.1], 400),
                                  {"name": "c0", "accuracy": 0.25, "macro_f1": 0.1}, [])  # fmt: skip
    seeds = ",".join(str(s) for s in range(need))
    assert f"    dvc exp run -S 'compare.seeds=[{seeds}]'" in text.splitlines()
    assert (
        f"| Fine-tune 10%, simclr | +2.5 | {d['minimum_detectable'] * 100:.1f} | {need} seeds |"
        in text
    )


def test_cell_metrics_give_one_small_file_a_cell_with_each_inits_mean_and_the_noise(summary):
    cells = report.cell_metrics(summary, FRACTIONS)
    assert list(cells) == ["finetune_1%.json", "finetune_10%.json", "linear_probe_1%.json",
                           "linear_probe_10%.json"]  # fmt: skip
    cell = cells["linear_probe_10%.json"]
    assert list(cell) == ["random", "simclr", "kmeans", "ci95"]
    assert cell["random"] == pytest.approx(0.72)
    widest = max((d["high"] - d["low"]) / 2 for d in (_vs(summary, "linear_probe", 0.1, i)
                                                      for i in ("simclr", "kmeans")))  # fmt: skip
    assert widest > 0 and cell["ci95"] == pytest.approx(widest, abs=1e-6)


def test_cell_metrics_have_no_interval_with_one_seed():
    rows = _runs({"random": [0.5], "kmeans": [0.5]}, [0], 0.5)
    out = _summary(rows, [0], [0.5], ("finetune",), ["random", "kmeans"])
    assert report.cell_metrics(out, [0.5])["finetune_50%.json"]["ci95"] is None


def test_chart_rows(summary):
    rows = report.chart_rows(summary, FRACTIONS)
    assert len(rows) == 2 * 2 * 3  # protocols x fractions x inits
    (row,) = [r for r in rows if (r["protocol"], r["init"], r["label_fraction"])
              == ("Fine-tune", "random", 0.01)]  # fmt: skip
    cell = summary["cells"]["finetune"]["labels_1%"]["random"]
    assert row == {"protocol": "Fine-tune", "init": "random", "label_fraction": 0.01,
                   "mean": cell["mean"], "ci95_low": cell["ci95_low"],
                   "ci95_high": cell["ci95_high"]}  # fmt: skip


def test_chart_rows_fall_back_to_the_mean_with_one_seed():
    rows = _runs({"random": [0.80], "simclr": [0.81]}, [3], 0.1)
    out = _summary(rows, [3], [0.1], ("finetune",), ["random", "simclr"])
    assert report.chart_rows(out, [0.1]) == [
        {"protocol": "Fine-tune", "init": "random", "label_fraction": 0.1, "mean": 0.8,
         "ci95_low": 0.8, "ci95_high": 0.8},
        {"protocol": "Fine-tune", "init": "simclr", "label_fraction": 0.1, "mean": 0.81,
         "ci95_low": 0.81, "ci95_high": 0.81},
    ]  # fmt: skip


def _curve_results() -> list[dict[str, Any]]:
    history = [
        {"step": 10, "train_loss": 2.0, "val_accuracy": 0.3},
        {"step": 20, "train_loss": 1.5, "val_accuracy": 0.45, "lr": 0.001},
    ]
    return [
        {"protocol": "finetune", "init": "simclr", "seed": 1, "label_fraction": 0.01,
         "accuracy": 0.5, "history": history},
        {"protocol": "finetune", "init": "random", "seed": 0, "label_fraction": 0.1,
         "accuracy": 0.4, "history": [{"step": 5, "train_loss": 2.2, "val_accuracy": 0.2}]},
        {"protocol": "linear_probe", "init": "random", "seed": 1, "label_fraction": 0.1,
         "accuracy": 0.4},  # no history: no rows
    ]  # fmt: skip


def test_curve_rows():
    assert report.curve_rows(_curve_results()) == [
        {"init": "simclr", "seed": 1, "label_fraction": 0.01, "run": "simclr seed 1",
         "step": 10, "train_loss": 2.0, "val_accuracy": 0.3},
        {"init": "simclr", "seed": 1, "label_fraction": 0.01, "run": "simclr seed 1",
         "step": 20, "train_loss": 1.5, "val_accuracy": 0.45},
        {"init": "random", "seed": 0, "label_fraction": 0.1, "run": "random seed 0",
         "step": 5, "train_loss": 2.2, "val_accuracy": 0.2},
    ]  # fmt: skip
    repeat = {**_curve_results()[1], "finetune_seed": 2}  # a fine-tune repeat: its own line
    assert report.curve_rows([repeat])[0]["run"] == "random seed 0/2"


def test_fill_chart_replaces_the_anchor_without_touching_the_template():
    template = {"data": {"values": "<DVC_METRIC_DATA>"},
                "layer": [{"data": {"values": "<DVC_METRIC_DATA>"}}, {"mark": "point"}]}  # fmt: skip
    filled = charts.fill_chart(template, [{"x": 1}])
    assert filled == {"data": {"values": [{"x": 1}]},
                      "layer": [{"data": {"values": [{"x": 1}]}}, {"mark": "point"}]}  # fmt: skip
    assert template["data"]["values"] == "<DVC_METRIC_DATA>"
    with pytest.raises(ValueError, match="<DVC_METRIC_DATA>"):
        charts.fill_chart({"data": {"values": []}, "mark": "point"}, [{"x": 1}])


@pytest.mark.parametrize("name", ["accuracy", "curves"])
def test_chart_templates_render_to_png(summary, name):
    template = json.loads((TEMPLATES / f"compare_{name}.json").read_text(encoding="utf-8"))
    rows = (report.chart_rows(summary, FRACTIONS) if name == "accuracy"
            else report.curve_rows(_curve_results()))  # fmt: skip
    filled = charts.fill_chart(template, rows)
    assert "<DVC_" not in json.dumps(filled)
    png = vl_convert.vegalite_to_png(filled)
    assert png[:8] == PNG_MAGIC and png[12:16] == b"IHDR"
    assert int.from_bytes(png[16:20], "big") > 2 * 300  # two facets of 300 px


@pytest.mark.parametrize(
    ("fraction", "key"),
    [(0.01, "labels_1%"), (0.07, "labels_7%"),  # 0.07 * 100 = 7.000000000000001
     (0.025, "labels_2.5%"), (1.0, "labels_100%"), (1, "labels_100%")],
)  # fmt: skip
def test_fraction_key(fraction, key):
    assert fraction_key(fraction) == key


def test_runs_not_at_a_plateau_are_flagged_in_the_report():
    rows = _runs({"random": [0.60, 0.62, 0.64], "simclr": [0.61, 0.66, 0.665]}, SEEDS, 0.1)
    for row in rows:
        still = row["init"] == "simclr" and row["seed"] == 1
        row["plateau"] = {"reached": not still, "change": -0.2 if still else -0.001,
                          "noise": 0.02, "points": 100}  # fmt: skip
    out = summarize(rows, LABELS, ["random", "simclr"], SEEDS, [0.1], 0.01, "holm", ("finetune",))
    cells = out["cells"]["finetune"]["labels_10%"]
    assert cells["simclr"]["plateau"] == {
        "runs": 3,
        "not_reached": ["1"],
        "worst": {"change": -0.2, "noise": 0.02},
    }
    assert cells["random"]["plateau"] == {"runs": 3, "not_reached": []}
    text = report.report_markdown(out, [0.1], labelled_subsets(rows, [0.1], 400),
                                  {"name": "c0", "accuracy": 0.25, "macro_f1": 0.1}, [])  # fmt: skip
    (line,) = [x for x in text.splitlines() if x.startswith("| simclr | 0.")][:1]
    assert "⚠ 1 of 3 runs not at a plateau" in line
    assert (
        "- 10% labels: 5 of 6 runs at a plateau; still changing: simclr seed(s) 1; furthest "
        "from flat: a change of -0.2 over the last third against noise 0.02"
    ) in text
    difference = [x for x in text.splitlines() if x.startswith("| simclr | +")]
    assert len(difference) == 1 and difference[0].endswith(" ⚠ |")
    assert "ended before a plateau, so the difference is that of this budget" in text
    for row in rows:  # every run settled: no mark on the difference
        row["plateau"]["reached"] = True
    out = summarize(rows, LABELS, ["random", "simclr"], SEEDS, [0.1], 0.01, "holm", ("finetune",))
    text = report.report_markdown(out, [0.1], labelled_subsets(rows, [0.1], 400),
                                  {"name": "c0", "accuracy": 0.25, "macro_f1": 0.1}, [])  # fmt: skip
    assert not [x for x in text.splitlines() if x.startswith("| simclr |") and "⚠" in x]
    assert "ended before a plateau" not in text


def test_pretraining_line_gives_compute_and_the_longer_budget_when_not_flat():
    from pathlib import Path

    from initbench.comparison.settings import pretraining_line
    from initbench.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    flat = {"steps": 300, "images_seen": 76800,
            "plateau": {"reached": True, "change": -0.001, "noise": 0.01, "points": 100}}  # fmt: skip
    falling = flat | {"plateau": {"reached": False, "change": -0.05, "noise": 0.01, "points": 100}}
    line = pretraining_line("simclr", {0: flat, 1: falling}, params)
    assert line.startswith("300 steps, 76,800 pairs of views a seed; NT-Xent NOT at a plateau")
    assert "seed(s) 1" in line and "-0.05" in line
    assert line.endswith(": a short default; a longer budget is "
                         "`dvc exp run -S simclr.until_plateau=true` (it grows until flat)")  # fmt: skip
    assert "at a plateau at every seed (0, 1)" in pretraining_line(
        "autoencoder", {0: flat, 1: flat}, params
    )


def test_pretraining_line_of_a_grown_budget_gives_each_seed_s_steps_and_its_cap():
    import dataclasses
    from pathlib import Path

    from initbench.comparison.settings import pretraining_line
    from initbench.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    params = dataclasses.replace(
        params, autoencoder=dataclasses.replace(params.autoencoder, until_plateau=True,
                                                max_steps=9000))  # fmt: skip
    flat = {"plateau": {"reached": True, "change": -0.001, "noise": 0.01, "points": 100}}
    reports = {0: flat | {"steps": 1050, "images_seen": 134400},
               1: flat | {"steps": 1350, "images_seen": 172800}}  # fmt: skip
    line = pretraining_line("autoencoder", reports, params)
    assert line == ("seed 0: 1,050 steps, 134,400 images; seed 1: 1,350 steps, 172,800 images "
                    "(grown until flat, at most 9,000; autoencoder.until_plateau); train MSE at "
                    "a plateau at every seed (0, 1)")  # fmt: skip
    floor_above_cap = {0: reports[0] | {"steps": 9500}}  # growth off: the floor stands
    assert "grown" not in pretraining_line("autoencoder", floor_above_cap, params)
    capped = reports | {1: reports[1] | {"steps": 9000, "plateau": {
        "reached": False, "change": -0.002, "noise": 0.001, "points": 3000}}}  # fmt: skip
    assert pretraining_line("autoencoder", capped, params).endswith(
        ": max_steps reached; a longer budget is `dvc exp run -S autoencoder.max_steps=18000`"
    )


def test_a_simclr_knn_monitor_still_moving_is_named_beside_a_flat_loss():
    from pathlib import Path

    from initbench.comparison.settings import pretraining_line
    from initbench.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")  # margin 0.01
    flat = {"steps": 300, "images_seen": 76800,
            "plateau": {"reached": True, "change": -0.001, "noise": 0.01, "points": 100}}  # fmt: skip
    knn = [{"step": 0, "accuracy": 0.87}, {"step": 150, "accuracy": 0.894}]
    still = flat | {"knn_monitor": [*knn, {"step": 300, "accuracy": 0.91}]}  # +1.6 pt
    steady = flat | {"knn_monitor": [*knn, {"step": 300, "accuracy": 0.899}]}  # +0.5 pt
    line = pretraining_line("simclr", {0: steady, 1: still}, params)
    assert (
        "at a plateau at every seed (0, 1); but its kNN val accuracy (a monitor) still "
        "moved by +1.6 points between steps 150 and 300 (seed 1; 1 of 2 seeds beyond the "
        "±1-point margin): a longer budget is `dvc exp run -S simclr.epochs=40`" in line
    )
    assert pretraining_line("simclr", {0: steady, 1: steady}, params).endswith(
        "at a plateau at every seed (0, 1)"
    )  # within the margin: the loss's check stands
    assert pretraining_line("simclr", {0: flat}, params).endswith("every seed (0)")  # none
    one_round = flat | {"knn_monitor": [knn[0], {"step": 300, "accuracy": 0.91}]}
    assert pretraining_line("simclr", {0: one_round}, params).endswith("every seed (0)")


def test_finetune_seeds_average_within_a_seed_and_split_the_spread_by_level():
    """Two fine-tune seeds a checkpoint: a seed's accuracy is the mean of its repeats, the
    tests stay on the seeds, and the report gives the levels and the repeats to decide."""
    accuracies = {0: {"random": [0.50, 0.60, 0.55], "simclr": [0.52, 0.58, 0.60]},
                  1: {"random": [0.54, 0.56, 0.57], "simclr": [0.53, 0.61, 0.58]}}  # fmt: skip
    rows = []
    for repeat, by_init in accuracies.items():
        for row in _runs(by_init, SEEDS, 0.1, shared_order=False):
            row["finetune_seed"] = repeat
            row["labelled_subset"] += f"-{repeat}"
            row["test_predictions"] = _predictions(
                row["accuracy"], np.random.default_rng([row["seed"], repeat, len(row["init"])])
                .permutation(N))  # fmt: skip
            rows.append(row)
    out = summarize(rows, LABELS, ["random", "simclr"], SEEDS, [0.1], 0.01, "holm",
                    ("finetune",), finetune_seeds=[0, 1])  # fmt: skip
    cell = out["cells"]["finetune"]["labels_10%"]
    assert cell["random"]["n"] == 3
    # over the seeds' means (0.52, 0.58, 0.56), not over the 6 runs
    assert cell["random"]["std"] == pytest.approx(np.std([0.52, 0.58, 0.56], ddof=1), abs=1e-6)
    d = cell["simclr"]["vs_random"]
    assert d["df"] < 3 + 1  # seeds are the units: about S - 1 = 2 df, not S x F - 1 = 5
    assert d["seeds_better"] + d["seeds_worse"] + d["seeds_tied"] == 6  # runs
    assert {"sd_pretraining", "sd_finetune", "finetune_seeds_to_decide"} <= set(d)
    assert out["family"]["finetune_seeds"] == 2
    subsets = labelled_subsets(rows, [0.1], 400)["labels_10%"]["seeds"]
    assert list(subsets) == ["0", "0/1", "1", "1/1", "2", "2/1"]
    text = report.report_markdown(out, [0.1], {"labels_10%": {"images": 40, "realised_fraction": 0.1,
                                                              "seeds": subsets}},
                                  {"name": "a", "accuracy": 0.25, "macro_f1": 0.1}, [])  # fmt: skip
    assert "over seeds, each the mean of its 2 fine-tune seeds" in text
    assert "one run's sd: pretraining" in text and "of 6 runs" in text
    assert "fine-tune seeds to decide at 3 seeds" in text
    assert "the current 3 seeds (each with 2 fine-tune seeds) detect" in text
    with pytest.raises(ValueError, match=r"seed=2 finetune_seed=1"):
        summarize(rows[:-1], LABELS, ["random", "simclr"], SEEDS, [0.1], 0.01, "holm",
                  ("finetune",), finetune_seeds=[0, 1])  # fmt: skip


def test_one_finetune_seed_report_offers_the_repeats_command():
    rows = _runs({"random": [0.50, 0.60, 0.55], "simclr": [0.52, 0.58, 0.60]}, SEEDS, 0.1,
                 shared_order=False)  # fmt: skip
    out = summarize(rows, LABELS, ["random", "simclr"], SEEDS, [0.1], 0.01, "holm", ("finetune",))
    assert "sd_finetune" not in out["cells"]["finetune"]["labels_10%"]["simclr"]["vs_random"]
    subsets = labelled_subsets(rows, [0.1], 400)
    text = report.report_markdown(out, [0.1], subsets, {"name": "a", "accuracy": 0.25,
                                                         "macro_f1": 0.1}, [])  # fmt: skip
    assert "dvc exp run -S 'compare.finetune_seeds=[0,1]'" in text


def test_planning_commands_keep_the_seeds_already_listed():
    seeds = [3, 7, 9]
    rows = _runs({"random": [0.50, 0.60, 0.55], "simclr": [0.52, 0.58, 0.60]}, seeds, 0.1,
                 shared_order=False)  # fmt: skip
    for row in rows:
        row["finetune_seed"] = 4
    out = summarize(rows, LABELS, ["random", "simclr"], seeds, [0.1], 0.01, "holm",
                    ("finetune",), finetune_seeds=[4])  # fmt: skip
    text = report.report_markdown(out, [0.1], labelled_subsets(rows, [0.1], 400),
                                  {"name": "a", "accuracy": 0.25, "macro_f1": 0.1}, [])  # fmt: skip
    assert "dvc exp run -S 'compare.finetune_seeds=[4,0]'" in text
    need = out["cells"]["finetune"]["labels_10%"]["simclr"]["vs_random"]["seeds_to_decide"]
    grown = [3, 7, 9, *[n for n in range(need) if n not in (3, 7, 9)][: need - 3]]
    assert f"dvc exp run -S 'compare.seeds=[{','.join(map(str, grown))}]'" in text
