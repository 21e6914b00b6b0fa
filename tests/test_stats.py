"""Tests of initbench.comparison.stats: t-intervals, paired verdicts, the summary, report and charts.

Expected numbers are worked out by hand in the comments. Student-t quantiles: with 2
degrees of freedom the t distribution has the closed-form quantile
t_{p,2} = (2p - 1) / sqrt(2p(1 - p)), so t_{0.975,2} = 4.30265272974946 and
t_{0.95,2} = 2.91998558035373; t_{0.975,3} = 3.18244630528371 is checked against the
closed-form CDF of t with 3 degrees of freedom. (The often-quoted 4.302652729911275 is off
in the 10th digit.)
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import vl_convert
from scipy import stats as scipy_stats

from initbench.comparison import report, stats
from initbench.views import charts


def _t2_quantile(p: float) -> float:
    """Student's t quantile with 2 degrees of freedom, in closed form."""
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def _t3_cdf(t: float) -> float:
    """Student's t CDF with 3 degrees of freedom, in closed form."""
    return 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi


T_975_2 = _t2_quantile(0.975)  # 4.30265272974946
T_95_2 = _t2_quantile(0.95)  # 2.91998558035373
T_975_3 = 3.18244630528371  # from a t table
TEMPLATES = Path(__file__).parents[1] / ".dvc" / "plots"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _runs(
    accuracies: dict[str, list[float]],
    seeds: list[int],
    fraction: float,
    protocol: str = "finetune",
) -> list[dict[str, Any]]:
    """One result per init x seed: ``accuracies[init][i]`` is the run with ``seeds[i]``."""
    return [
        {"protocol": protocol, "init": init, "seed": seed, "label_fraction": fraction,
         "accuracy": accuracy}
        for init, values in accuracies.items()
        for seed, accuracy in zip(seeds, values, strict=True)
    ]  # fmt: skip


def test_t_quantiles():
    assert abs(T_975_2 - 4.30265272974946) < 1e-13
    assert abs(T_95_2 - 2.91998558035373) < 1e-13
    assert _t3_cdf(T_975_3) == pytest.approx(0.975, abs=1e-14)
    # scipy, which compare.t_interval uses, agrees:
    assert scipy_stats.t.ppf(0.975, 2) == pytest.approx(T_975_2, rel=1e-13)
    assert scipy_stats.t.ppf(0.95, 2) == pytest.approx(T_95_2, rel=1e-13)
    assert scipy_stats.t.ppf(0.975, 3) == pytest.approx(T_975_3, rel=1e-13)


# --------------------------------------------------------------------------- t_interval


def test_t_interval_of_three_values():
    # mean 0.82; deviations -0.02, 0, +0.02: sample var 0.0008 / 2 = 0.0004, std 0.02.
    out = stats.t_interval([0.80, 0.82, 0.84])
    half = T_975_2 * 0.02 / math.sqrt(3)  # 0.049683
    assert set(out) == {"mean", "std", "n", "ci95_low", "ci95_high"}
    assert out["n"] == 3
    assert out["mean"] == pytest.approx(0.82, abs=1e-12)
    assert out["std"] == pytest.approx(0.02, abs=1e-12)
    assert out["ci95_low"] == pytest.approx(0.82 - half, abs=1e-12)
    assert out["ci95_high"] == pytest.approx(0.82 + half, abs=1e-12)


def test_t_interval_confidence_sets_the_quantile():
    out = stats.t_interval([0.80, 0.82, 0.84], confidence=0.90)
    half = T_95_2 * 0.02 / math.sqrt(3)
    assert out["ci95_low"] == pytest.approx(0.82 - half, abs=1e-12)
    assert out["ci95_high"] == pytest.approx(0.82 + half, abs=1e-12)


def test_t_interval_of_four_values():
    # [0.60, 0.80, 0.70, 0.90]: mean 0.75, squared deviations 0.0225 + 0.0025 + 0.0025 +
    # 0.0225 = 0.05, sample var 0.05 / 3.
    out = stats.t_interval([0.60, 0.80, 0.70, 0.90])
    std = math.sqrt(0.05 / 3)
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(0.75, abs=1e-12)
    assert out["std"] == pytest.approx(std, abs=1e-12)
    assert out["ci95_low"] == pytest.approx(0.75 - T_975_3 * std / 2, abs=1e-12)
    assert out["ci95_high"] == pytest.approx(0.75 + T_975_3 * std / 2, abs=1e-12)


def test_t_interval_of_one_value_has_no_interval():
    out = stats.t_interval([0.7])
    assert out == {"mean": 0.7, "std": None, "n": 1, "ci95_low": None, "ci95_high": None}
    json.dumps(out, allow_nan=False)  # no NaN in metrics


def test_t_interval_of_constant_values_is_a_point():
    out = stats.t_interval([0.5, 0.5, 0.5])
    assert (out["std"], out["ci95_low"], out["ci95_high"]) == (0.0, 0.5, 0.5)


def test_t_interval_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one value"):
        stats.t_interval([])


# --------------------------------------------------------------------------- verdict


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.001, 0.02, "better"),
        (-0.02, -0.001, "worse"),
        (-0.01, 0.01, "no detectable difference"),
        (0.0, 0.01, "no detectable difference"),  # the CI touches 0: not excluded
        (-0.01, 0.0, "no detectable difference"),
        (None, None, "too few seeds"),
    ],
)
def test_verdict(low, high, expected):
    assert stats.verdict(low, high) == expected


# --------------------------------------------------------------------------- fraction_key


@pytest.mark.parametrize(
    ("fraction", "key"),
    [
        (0.01, "labels_1%"),
        (0.05, "labels_5%"),
        (0.07, "labels_7%"),  # 0.07 * 100 = 7.000000000000001 in floating point
        (0.1, "labels_10%"),
        (0.025, "labels_2.5%"),
        (0.001, "labels_0.1%"),
        (1.0, "labels_100%"),
        (1, "labels_100%"),
    ],
)
def test_fraction_key(fraction, key):
    assert stats.fraction_key(fraction) == key


# --------------------------------------------------------------------------- summarize

SEEDS4 = [0, 1, 2, 3]
# Seeds differ a lot in difficulty (0.60 .. 0.90), so every cell's CI is wide; the paired
# differences against random are what the verdicts see.
PAIRED = {
    "random": [0.60, 0.80, 0.70, 0.90],
    # d = +0.011, +0.009, +0.0105, +0.0095: mean +0.01, squared deviations 1e-6 + 1e-6 +
    # 2.5e-7 + 2.5e-7 = 2.5e-6, sample var 2.5e-6 / 3.
    "simclr": [0.611, 0.809, 0.7105, 0.9095],
    # d = -0.025, -0.015, -0.02, -0.02: mean -0.02, squared deviations 5e-5, var 5e-5 / 3.
    "kmeans": [0.575, 0.785, 0.68, 0.88],
    # d = +0.03, -0.02, +0.01, -0.02: mean 0, squared deviations 0.0018, var 0.0006.
    "autoencoder": [0.63, 0.78, 0.71, 0.88],
}
INITS4 = ["random", "autoencoder", "simclr", "kmeans"]


@pytest.fixture(scope="module")
def paired() -> dict[str, Any]:
    results = _runs(PAIRED, SEEDS4, 0.1)
    return stats.summarize(results, INITS4, SEEDS4, [0.1], protocols=("finetune",))


def test_summarize_paired_difference_sees_what_the_cell_cis_cannot(paired):
    cells = paired["finetune"]["labels_10%"]
    random_cell, simclr = cells["random"], cells["simclr"]
    # The cells: random mean 0.75 with a CI about +-0.21 wide; simclr's mean 0.76 lies
    # inside it, and the two CIs overlap almost entirely.
    random_half = T_975_3 * math.sqrt(0.05 / 3) / 2  # 0.205
    assert random_cell["mean"] == pytest.approx(0.75, abs=1e-6)
    assert random_cell["ci95_low"] == pytest.approx(0.75 - random_half, abs=1e-6)
    assert random_cell["ci95_high"] == pytest.approx(0.75 + random_half, abs=1e-6)
    assert simclr["mean"] == pytest.approx(0.76, abs=1e-6)
    assert random_cell["ci95_low"] < simclr["mean"] < random_cell["ci95_high"]
    assert simclr["ci95_low"] < random_cell["mean"] < simclr["ci95_high"]
    # An unpaired test sees nothing either:
    assert scipy_stats.ttest_ind(PAIRED["simclr"], PAIRED["random"]).pvalue > 0.5
    # The paired differences: +0.01 +- 0.00145.
    half = T_975_3 * math.sqrt(2.5e-6 / 3) / 2  # 0.00145
    assert simclr["diff_vs_random"] == pytest.approx(0.01, abs=1e-6)
    assert simclr["diff_ci95_low"] == pytest.approx(0.01 - half, abs=1e-6)
    assert simclr["diff_ci95_high"] == pytest.approx(0.01 + half, abs=1e-6)
    assert simclr["verdict"] == "better"


def test_summarize_negative_paired_difference_is_worse(paired):
    kmeans = paired["finetune"]["labels_10%"]["kmeans"]
    half = T_975_3 * math.sqrt(5e-5 / 3) / 2  # 0.0065
    assert kmeans["diff_vs_random"] == pytest.approx(-0.02, abs=1e-6)
    assert kmeans["diff_ci95_low"] == pytest.approx(-0.02 - half, abs=1e-6)
    assert kmeans["diff_ci95_high"] == pytest.approx(-0.02 + half, abs=1e-6)
    assert kmeans["verdict"] == "worse"


def test_summarize_mixed_sign_differences_are_no_detectable_difference(paired):
    autoencoder = paired["finetune"]["labels_10%"]["autoencoder"]
    half = T_975_3 * math.sqrt(0.0006) / 2  # 0.039
    assert autoencoder["diff_vs_random"] == pytest.approx(0.0, abs=1e-6)
    assert autoencoder["diff_ci95_low"] == pytest.approx(-half, abs=1e-6)
    assert autoencoder["diff_ci95_high"] == pytest.approx(half, abs=1e-6)
    assert autoencoder["verdict"] == "no detectable difference"


def test_summarize_cell_keys_and_random_has_no_difference(paired):
    cells = paired["finetune"]["labels_10%"]
    assert list(cells) == INITS4
    assert set(cells["random"]) == {"mean", "std", "n", "ci95_low", "ci95_high"}
    for init in ("autoencoder", "simclr", "kmeans"):
        assert set(cells[init]) == {
            "mean", "std", "n", "ci95_low", "ci95_high",
            "diff_vs_random", "diff_ci95_low", "diff_ci95_high", "verdict",
        }  # fmt: skip
        assert cells[init]["n"] == 4


def test_summarize_rounds_to_six_digits():
    # mean of 0.1, 0.2, 0.2 = 0.5 / 3 = 0.1666...; rounded 0.166667.
    results = _runs({"random": [0.1, 0.2, 0.2]}, [0, 1, 2], 0.5)
    cell = stats.summarize(results, ["random"], [0, 1, 2], [0.5], ("finetune",))["finetune"]
    assert cell["labels_50%"]["random"]["mean"] == 0.166667


def test_summarize_output_is_keyed_by_protocol_fraction_and_init():
    seeds, fractions = [0, 1], [0.01, 0.1]
    results = []
    for protocol in ("finetune", "linear_probe"):
        for fraction in fractions:
            values = {"random": [0.5, 0.6], "kmeans": [0.55, 0.62]}
            results += _runs(values, seeds, fraction, protocol)
    random.Random(0).shuffle(results)  # the order of the runs does not matter
    out = stats.summarize(results, ["random", "kmeans"], seeds, fractions)
    assert list(out) == ["finetune", "linear_probe"]
    for protocol in out:
        assert list(out[protocol]) == ["labels_1%", "labels_10%"]
        for cells in out[protocol].values():
            assert list(cells) == ["random", "kmeans"]
            # d = +0.05, +0.02: mean 0.035
            assert cells["kmeans"]["diff_vs_random"] == pytest.approx(0.035, abs=1e-6)


def test_summarize_single_seed_has_no_interval_and_no_nan():
    results = _runs({"random": [0.80], "simclr": [0.81]}, [7], 0.1)
    out = stats.summarize(results, ["random", "simclr"], [7], [0.1], ("finetune",))
    cells = out["finetune"]["labels_10%"]
    assert cells["random"] == {
        "mean": 0.8, "std": None, "n": 1, "ci95_low": None, "ci95_high": None,
    }  # fmt: skip
    simclr = cells["simclr"]
    assert simclr["std"] is None and simclr["ci95_low"] is None and simclr["ci95_high"] is None
    assert simclr["diff_vs_random"] == pytest.approx(0.01, abs=1e-6)
    assert simclr["diff_ci95_low"] is None and simclr["diff_ci95_high"] is None
    assert simclr["verdict"] == "too few seeds"
    json.dumps(out, allow_nan=False)


def test_summarize_names_a_missing_run():
    seeds, fractions = [0, 1, 2], [0.01, 0.1]
    results = []
    for protocol in ("finetune", "linear_probe"):
        for fraction in fractions:
            results += _runs({"random": [0.5] * 3, "simclr": [0.6] * 3}, seeds, fraction, protocol)
    missing = {"protocol": "linear_probe", "init": "simclr", "label_fraction": 0.1, "seed": 2}
    results = [r for r in results if {k: r[k] for k in missing} != missing]
    with pytest.raises(ValueError) as info:
        stats.summarize(results, ["random", "simclr"], seeds, fractions)
    message = str(info.value)
    for part in ("protocol=linear_probe", "init=simclr", "label_fraction=0.1", "seed=2"):
        assert part in message


def test_summarize_refuses_a_run_present_twice():
    results = _runs({"random": [0.5, 0.6], "simclr": [0.6, 0.7]}, [0, 1], 0.01)
    results.append(dict(results[1]))  # random, seed 1, again
    with pytest.raises(ValueError) as info:
        stats.summarize(results, ["random", "simclr"], [0, 1], [0.01], ("finetune",))
    assert "('finetune', 'random', 0.01, 1)" in str(info.value)
    assert "twice" in str(info.value)


def test_summarize_needs_random_among_the_inits():
    results = _runs({"simclr": [0.6, 0.7]}, [0, 1], 0.01)
    with pytest.raises(ValueError, match="'random'"):
        stats.summarize(results, ["simclr"], [0, 1], [0.01], ("finetune",))


# --------------------------------------------------------------------------- chart rows

SEEDS3 = [0, 1, 2]
FRACTIONS = [0.01, 0.1]
# (protocol, fraction) -> init -> accuracy per seed. Hand-computed below (t_{0.975,2}):
REPORT_RUNS = {
    # random: mean 0.82, std 0.02, CI 0.82 +- 0.049683 = [0.770, 0.870].
    # simclr: mean 0.83, CI [0.780, 0.880]; d = +0.01 each seed: better.
    ("finetune", 0.01): {"random": [0.80, 0.82, 0.84], "simclr": [0.81, 0.83, 0.85]},
    # random: mean 0.92, CI [0.870, 0.970]. simclr: mean 0.90, CI [0.850, 0.950];
    # d = -0.02 each seed: worse.
    ("finetune", 0.1): {"random": [0.90, 0.92, 0.94], "simclr": [0.88, 0.90, 0.92]},
    # random: mean 0.6, std 0.1, CI 0.6 +- 0.248414 = [0.352, 0.848].
    # simclr: mean 0.61, deviations -0.08, -0.02, +0.10, var 0.0168 / 2 = 0.0084,
    # CI 0.61 +- 4.3027 * 0.091652 / sqrt(3) = 0.61 +- 0.227676 = [0.382, 0.838];
    # d = +0.03, -0.01, +0.01: mean +0.01, std 0.02, CI [-0.040, +0.060]: no difference.
    ("linear_probe", 0.01): {"random": [0.50, 0.60, 0.70], "simclr": [0.53, 0.59, 0.71]},
    # random: mean 0.72, CI [0.670, 0.770]; simclr: mean 0.73, CI [0.680, 0.780]; better.
    ("linear_probe", 0.1): {"random": [0.70, 0.72, 0.74], "simclr": [0.71, 0.73, 0.75]},
}
HALF_002 = T_975_2 * 0.02 / math.sqrt(3)  # the CI half-width of 3 values with std 0.02


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    results = []
    for (protocol, fraction), values in REPORT_RUNS.items():
        results += _runs(values, SEEDS3, fraction, protocol)
    return stats.summarize(results, ["random", "simclr"], SEEDS3, FRACTIONS)


def test_chart_rows(summary):
    rows = report.chart_rows(summary, FRACTIONS)
    assert len(rows) == 2 * 2 * 2  # protocols x fractions x inits
    assert {(r["protocol"], r["init"], r["label_fraction"]) for r in rows} == {
        (p, i, f) for p in ("Fine-tune", "Linear probe") for i in ("random", "simclr")
        for f in FRACTIONS
    }  # fmt: skip
    (row,) = [r for r in rows if (r["protocol"], r["init"], r["label_fraction"])
              == ("Fine-tune", "random", 0.01)]  # fmt: skip
    assert set(row) == {"protocol", "init", "label_fraction", "mean", "ci95_low", "ci95_high"}
    assert row["mean"] == pytest.approx(0.82, abs=1e-6)
    assert row["ci95_low"] == pytest.approx(0.82 - HALF_002, abs=1e-6)
    assert row["ci95_high"] == pytest.approx(0.82 + HALF_002, abs=1e-6)
    (row,) = [r for r in rows if (r["protocol"], r["init"], r["label_fraction"])
              == ("Linear probe", "simclr", 0.1)]  # fmt: skip
    assert row["mean"] == pytest.approx(0.73, abs=1e-6)
    assert row["ci95_low"] == pytest.approx(0.73 - HALF_002, abs=1e-6)


def test_chart_rows_fall_back_to_the_mean_with_one_seed():
    results = _runs({"random": [0.80], "simclr": [0.81]}, [3], 0.1)
    out = stats.summarize(results, ["random", "simclr"], [3], [0.1], ("finetune",))
    rows = report.chart_rows(out, [0.1])
    assert rows == [
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
        {"protocol": "finetune", "init": "random", "seed": 1, "label_fraction": 0.1,
         "accuracy": 0.4, "history": []},
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


# --------------------------------------------------------------------------- report


def test_report_markdown_tables_and_verdicts(summary):
    settings = [("seeds", "[0, 1, 2]"), ("model", "conv blocks [16, 32, 64]")]
    text = report.report_markdown(summary, FRACTIONS, {0.01: 120, 0.1: 1200}, settings)
    lines = text.splitlines()
    assert lines[0] == "# Which init helps? The comparison"
    header = "| init | 1% labels (120 images) | 10% labels (1,200 images) |"
    assert lines.count(header) == 4  # accuracy and difference table, for each protocol
    expected = [
        "## Fine-tune",
        "| random | 0.820 [0.770, 0.870] | 0.920 [0.870, 0.970] |",
        "| simclr | 0.830 [0.780, 0.880] | 0.900 [0.850, 0.950] |",
        "Fine-tune, paired difference against random:",
        "| simclr | +0.010 [+0.010, +0.010] **better** | -0.020 [-0.020, -0.020] **worse** |",
        "## Linear probe",
        "| random | 0.600 [0.352, 0.848] | 0.720 [0.670, 0.770] |",
        "| simclr | 0.610 [0.382, 0.838] | 0.730 [0.680, 0.780] |",
        "Linear probe, paired difference against random:",
        "| simclr | +0.010 [-0.040, +0.060] **no detectable difference** "
        "| +0.010 [+0.010, +0.010] **better** |",
        "## Settings",
        "- **seeds:** [0, 1, 2]",
        "- **model:** conv blocks [16, 32, 64]",
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions)  # each present, in this order
    assert sum(line.startswith("| random |") for line in lines) == 2  # not in the diff tables


def test_report_markdown_single_seed():
    results = _runs({"random": [0.80], "simclr": [0.81]}, [0], 0.1)
    out = stats.summarize(results, ["random", "simclr"], [0], [0.1], ("finetune",))
    lines = report.report_markdown(out, [0.1], {0.1: 50}, []).splitlines()
    assert "| random | 0.800 (n=1) |" in lines
    assert "| simclr | 0.810 (n=1) |" in lines
    assert "| simclr | +0.010, too few seeds |" in lines
    assert "## Linear probe" not in lines


# --------------------------------------------------------------------------- fill_chart


def test_fill_chart_replaces_the_anchor_without_touching_the_template():
    template = {
        "data": {"values": "<DVC_METRIC_DATA>"},
        "layer": [{"data": {"values": "<DVC_METRIC_DATA>"}}, {"mark": "point"}],
        "title": "accuracy",
    }
    rows = [{"x": 1, "y": 2}]
    filled = charts.fill_chart(template, rows)
    assert filled == {
        "data": {"values": [{"x": 1, "y": 2}]},
        "layer": [{"data": {"values": [{"x": 1, "y": 2}]}}, {"mark": "point"}],
        "title": "accuracy",
    }
    assert template["data"]["values"] == "<DVC_METRIC_DATA>"
    assert template["layer"][0]["data"]["values"] == "<DVC_METRIC_DATA>"


def test_fill_chart_without_the_anchor_is_an_error():
    with pytest.raises(ValueError, match="<DVC_METRIC_DATA>"):
        charts.fill_chart({"data": {"values": []}, "mark": "point"}, [{"x": 1}])


def _png_width(png: bytes) -> int:
    assert png[:8] == PNG_MAGIC
    assert png[12:16] == b"IHDR"
    return int.from_bytes(png[16:20], "big")


@pytest.mark.parametrize("name", ["accuracy", "curves"])
def test_chart_templates_render_to_png(summary, name):
    text = (TEMPLATES / f"compare_{name}.json").read_text(encoding="utf-8")
    assert '"<DVC_METRIC_DATA>"' in text
    template = json.loads(text)
    if name == "accuracy":
        rows = report.chart_rows(summary, FRACTIONS)  # two protocols
    else:
        rows = report.curve_rows(_curve_results())  # two label fractions
    filled = charts.fill_chart(template, rows)
    assert "<DVC_" not in json.dumps(filled)  # no anchor is left for Vega-Lite to trip on
    png = vl_convert.vegalite_to_png(filled)
    # Both templates facet into columns 300 px wide: two facets make it wider than 600.
    assert _png_width(png) > 2 * 300


def test_cell_metrics_give_one_small_file_a_cell_with_each_inits_mean_and_the_noise():
    rows = [{"protocol": p, "init": i, "seed": s, "label_fraction": f,
             "accuracy": 0.5 + 0.1 * ["random", "simclr", "kmeans"].index(i) + 0.01 * s * (i == "kmeans")}
            for p in ("finetune", "linear_probe") for i in ("random", "simclr", "kmeans")
            for s in (0, 1, 2) for f in (0.01, 0.05)]  # fmt: skip
    summary = stats.summarize(rows, ["random", "simclr", "kmeans"], [0, 1, 2], [0.01, 0.05])
    cells = report.cell_metrics(summary, [0.01, 0.05])
    assert list(cells) == ["finetune_1%.json", "finetune_5%.json", "linear_probe_1%.json",
                           "linear_probe_5%.json"]  # fmt: skip
    cell = cells["linear_probe_5%.json"]
    assert list(cell) == ["random", "simclr", "kmeans", "ci95"]
    assert cell["simclr"] == pytest.approx(0.6) and cell["random"] == pytest.approx(0.5)
    full = summary["linear_probe"]["labels_5%"]
    widest = max((c["diff_ci95_high"] - c["diff_ci95_low"]) / 2 for c in
                 (full["simclr"], full["kmeans"]))  # fmt: skip
    assert widest > 0 and cell["ci95"] == pytest.approx(widest, abs=1e-6)  # kmeans' spread


def test_cell_metrics_have_no_interval_with_one_seed():
    rows = [{"protocol": "finetune", "init": i, "seed": 0, "label_fraction": 0.5,
             "accuracy": 0.5} for i in ("random", "kmeans")]  # fmt: skip
    summary = stats.summarize(rows, ["random", "kmeans"], [0], [0.5], ("finetune",))
    assert report.cell_metrics(summary, [0.5])["finetune_50%.json"]["ci95"] is None
