"""Tests of initbench.comparison.stats: intervals, variance components, TOST, Holm, the
verdict's precedence, power and the seeds planner, probability of improvement.

Expected numbers are worked out by hand in the comments or checked against statsmodels and
closed forms. With 2 degrees of freedom Student's t has the closed-form CDF
F(t) = 1/2 + t / (2 sqrt(2 + t^2)) and quantile t_p = (2p - 1) / sqrt(2p(1 - p)).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from initbench.comparison import stats


def _t2_cdf(t: float) -> float:
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def _t2_quantile(p: float) -> float:
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


# --------------------------------------------------------------------------- t_interval


def test_t_interval_of_three_values():
    # mean 0.82; deviations -0.02, 0, +0.02: sample var 0.0008 / 2 = 0.0004, std 0.02.
    out = stats.t_interval([0.80, 0.82, 0.84])
    half = _t2_quantile(0.975) * 0.02 / math.sqrt(3)  # 0.049683
    assert set(out) == {"mean", "std", "n", "ci95_low", "ci95_high"}
    assert out["n"] == 3
    assert out["mean"] == pytest.approx(0.82, abs=1e-12)
    assert out["std"] == pytest.approx(0.02, abs=1e-12)
    assert out["ci95_low"] == pytest.approx(0.82 - half, abs=1e-12)
    assert out["ci95_high"] == pytest.approx(0.82 + half, abs=1e-12)


def test_t_interval_confidence_sets_the_quantile():
    out = stats.t_interval([0.80, 0.82, 0.84], confidence=0.90)
    half = _t2_quantile(0.95) * 0.02 / math.sqrt(3)
    assert out["ci95_low"] == pytest.approx(0.82 - half, abs=1e-12)


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


def test_sd_interval_of_three_values():
    # chi-square with 2 df: quantiles -2 ln(1 - p): 0.025 -> 0.050636, 0.975 -> 7.377759.
    low, high = stats.sd_interval(1.0, 3)
    assert low == pytest.approx(math.sqrt(2 / (-2 * math.log(0.025))), rel=1e-9)  # 0.5207
    assert high == pytest.approx(math.sqrt(2 / (-2 * math.log(0.975))), rel=1e-9)  # 6.2847
    with pytest.raises(ValueError, match="at least 2"):
        stats.sd_interval(1.0, 1)


# --------------------------------------------------------------------------- variance components


def test_variance_components_of_a_small_table_by_hand():
    # d = [[1, 0, 0, 1], [0, 0, 1, 1]]: mean 0.5. Per seed: 0.5, 0.5 (sd 0); per image:
    # 0.5, 0, 0.5, 1, sample var (0 + 0.25 + 0 + 0.25) / 3 = 1/6.
    # Residuals d - row - col + mean: [[0.5, 0, -0.5, 0], [-0.5, 0, 0.5, 0]]: sum of squares 1,
    # MS_res = 1 / ((2 - 1)(4 - 1)) = 1/3. MS_image = 2 * 1/6 = 1/3.
    # var_test = (MS_image - MS_res) / (S N) = 0; var_seeds = 0 / 2.
    d = np.array([[1, 0, 0, 1], [0, 0, 1, 1]], dtype=float)
    out = stats.variance_components(d)
    assert (out.mean, out.seeds, out.images) == (0.5, 2, 4)
    assert out.seed_sd == 0 and out.var_seeds == 0 and out.var_test == pytest.approx(0, abs=1e-15)
    # Make image 4 favour the init at both seeds and image 1 at neither: a test-set effect.
    d = np.array([[1, 0, 0, 1], [1, 0, 0, 1]], dtype=float)
    out = stats.variance_components(d)
    # per image 1, 0, 0, 1: var 1/3; residuals 0: var_test = 2 * (1/3) / 8 = 1/12.
    assert out.var_test == pytest.approx(1 / 12, rel=1e-12) and out.var_seeds == 0


def test_variance_components_recover_known_seed_and_test_set_parts():
    # d[s, j] = a_s + b_j + e_sj with known standard deviations; the estimates of the seed
    # part (sd_a^2 + sd_e^2 / N) and of the test-set part (sd_b^2) recover them.
    rng = np.random.default_rng(0)
    seeds, images, sd_a, sd_b, sd_e = 300, 600, 0.03, 0.2, 0.5
    d = (rng.normal(0, sd_a, (seeds, 1)) + rng.normal(0, sd_b, (1, images))
         + rng.normal(0, sd_e, (seeds, images)))  # fmt: skip
    out = stats.variance_components(d)
    assert out.var_seeds * seeds == pytest.approx(sd_a**2 + sd_e**2 / images, rel=0.2)
    assert out.var_test * images == pytest.approx(sd_b**2, rel=0.15)
    # And a second draw with no test-set effect finds (close to) none.
    d = rng.normal(0, sd_a, (seeds, 1)) + rng.normal(0, sd_e, (seeds, images))
    assert stats.variance_components(d).var_test * images < 0.01 * sd_b**2


def test_one_seed_still_gives_the_test_set_part():
    rng = np.random.default_rng(1)
    right = rng.random((1, 500)) < 0.7
    reference = rng.random((1, 500)) < 0.6
    out = stats.paired_difference(right, reference)
    d = right[0].astype(float) - reference[0]
    # The paired standard error of two models on the same images: var(d) / N.
    assert out.var_test == pytest.approx(d.var(ddof=1) / 500, rel=1e-12)
    assert out.var_seeds is None and out.seed_sd is None
    assert out.se == pytest.approx(math.sqrt(d.var(ddof=1) / 500), rel=1e-12)


def test_paired_difference_needs_paired_shapes():
    with pytest.raises(ValueError, match="equal"):
        stats.paired_difference(np.ones((2, 3), bool), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="both sizes"):
        stats.variance_components(np.ones((0, 3)))


def test_welch_df():
    # Two equal parts, 2 and 99 df: (2v)^2 / (v^2 / 2 + v^2 / 99).
    assert stats.welch_df(1.0, 3, 1.0, 100) == pytest.approx(4 / (1 / 2 + 1 / 99), rel=1e-12)
    assert stats.welch_df(1.0, 3, 0.0, 100) == pytest.approx(2.0)  # seeds only: S - 1
    assert stats.welch_df(0.0, 3, 0.0, 100) == math.inf


# --------------------------------------------------------------------------- tests


def test_t_test_by_hand():
    # mean 0.02, se 0.01, 2 df: t = 2, p = 2 (1 - F(2)) = 1 - 2 / sqrt(6).
    assert stats.t_test(0.02, 0.01, 2) == pytest.approx(1 - 2 / math.sqrt(6), rel=1e-12)
    assert stats.t_test(0.0, 0.0, 2) == 1.0 and stats.t_test(0.01, 0.0, 2) == 0.0


def test_tost_by_hand():
    # d = 0.01, 0.02, 0.03: mean 0.02, sd 0.01, se 0.01 / sqrt(3), 2 df; margin 0.05.
    # Lower test: t = 0.07 / se = 12.124, p = 1 - F(12.124); upper: t = -0.03 / se = -5.196,
    # p = F(-5.196) = 0.01755. TOST p is the larger.
    se = 0.01 / math.sqrt(3)
    expected = max(1 - _t2_cdf(0.07 / se), _t2_cdf(-0.03 / se))
    assert expected == pytest.approx(0.017549, abs=1e-6)
    assert stats.tost(0.02, se, 2, 0.05) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tost_agrees_with_statsmodels_paired(seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0.70, 0.02, 5), rng.normal(0.70, 0.02, 5)
    d = x1 - x2
    se = d.std(ddof=1) / math.sqrt(5)
    expected = ttost_paired(x1, x2, -0.03, 0.03)[0]
    assert stats.tost(float(d.mean()), se, 4, 0.03) == pytest.approx(expected, rel=1e-9)


def test_holm_by_hand_and_against_statsmodels():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running
    # maximum 0.02, 0.03, 0.06, 0.06; back in input order:
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-12)
    assert stats.adjust(p, "holm") == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert stats.adjust(p, "none") == p
    # Three of twelve tests at 0.0055, 0.023, 0.030 (the others larger): 0.066, 0.253, 0.30.
    family = [0.0055, 0.023, 0.030] + [0.2 + 0.05 * i for i in range(9)]
    assert stats.adjust(family, "holm")[:3] == pytest.approx([0.066, 0.253, 0.30], rel=1e-12)
    with pytest.raises(ValueError, match="holm, none"):
        stats.adjust(p, "bonferroni")


@pytest.mark.parametrize("p", [0.0001, 0.003, 0.01, 0.02, 0.2])
def test_interval_excludes_zero_exactly_when_the_adjusted_test_rejects(p):
    df, se = 4.0, 0.01
    mean = float(scipy_stats.t.isf(p / 2, df)) * se  # the estimate whose two-sided p is p
    for p_adjusted in (p, min(1.0, 3 * p), min(1.0, 12 * p)):
        low, high, confidence = stats.interval(mean, se, df, p, p_adjusted, 0.05)
        assert (low > 0) == (p_adjusted < 0.05), (p, p_adjusted)
        assert 1 - 0.05 <= confidence <= 1 - 0.05 / 12 + 1e-12  # between alpha and Bonferroni
        assert high - mean == pytest.approx(mean - low)


# --------------------------------------------------------------------------- verdict

MARGIN = 0.01
PRECEDENCE = [
    # low, high, adjusted TOST p -> verdict, qualifier
    (0.02, 0.05, 0.9, "better", "beyond the margin"),  # excludes 0 and +margin
    (0.004, 0.03, 0.6, "better", None),  # excludes 0, not the margin, not equivalent
    (0.002, 0.008, 0.01, "better", "within the margin"),  # real, and inside +-margin too
    (-0.05, -0.02, 0.9, "worse", "beyond the margin"),
    (-0.03, -0.004, 0.6, "worse", None),
    (-0.008, -0.002, 0.01, "worse", "within the margin"),
    (-0.005, 0.006, 0.01, "equivalent", None),  # includes 0; TOST puts it inside
    (-0.02, 0.03, 0.4, "inconclusive", None),
    (0.0, 0.03, 0.4, "inconclusive", None),  # touching 0 is not excluding it
    (-0.005, 0.006, 0.05, "inconclusive", None),  # TOST at exactly alpha does not hold
]


@pytest.mark.parametrize(("low", "high", "tost_p", "verdict", "qualifier"), PRECEDENCE)
def test_verdict_precedence(low, high, tost_p, verdict, qualifier):
    assert stats.verdict(low, high, tost_p, MARGIN, 0.05) == (verdict, qualifier)


# --------------------------------------------------------------------------- power


@pytest.mark.parametrize(("sd", "alpha"), [(0.01, 0.05), (0.02, 0.05), (0.03, 0.004), (0.05, 0.01)])
def test_seeds_to_decide_matches_statsmodels_without_test_set_noise(sd, alpha):
    needed = stats.seeds_to_decide(sd, 0.0, 2000, MARGIN, alpha)
    exact = TTestPower().solve_power(effect_size=MARGIN / sd, power=0.8, alpha=alpha)
    assert needed == max(2, math.ceil(exact))
    # Closed form (normal approximation): n = ((z_{1-alpha/2} + z_{0.8}) sd / margin)^2; the
    # t-test needs a few seeds more, never fewer.
    z = scipy_stats.norm.isf(alpha / 2) + scipy_stats.norm.isf(0.2)
    closed = (z * sd / MARGIN) ** 2
    assert closed <= needed <= closed + 6


def test_seeds_cannot_decide_when_the_test_set_alone_is_too_noisy():
    # Test-set SE 0.5 points against a 1-point margin: even infinitely many seeds leave
    # (1.96 + 0.84) * 0.5 = 1.4 points > 1 point detectable.
    assert stats.seeds_to_decide(0.02, 0.005**2, 2000, MARGIN, 0.05) is None
    # At 0.2 points it is possible, with more seeds than without the test-set part.
    with_test = stats.seeds_to_decide(0.02, 0.002**2, 2000, MARGIN, 0.05)
    assert with_test is not None and with_test > stats.seeds_to_decide(
        0.02, 0.0, 2000, MARGIN, 0.05
    )


def test_minimum_detectable_difference_has_the_target_power():
    mdd = stats.minimum_detectable(0.02, 0.003**2, 3, 2000, 0.05)
    assert stats.power(mdd, 0.02, 0.003**2, 3, 2000, 0.05) == pytest.approx(0.8, abs=1e-6)
    # Without the test-set part it is statsmodels' effect size times the seed sd.
    effect = TTestPower().solve_power(nobs=3, power=0.8, alpha=0.05)
    assert stats.minimum_detectable(0.02, 0.0, 3, 2000, 0.05) == pytest.approx(
        0.02 * effect, rel=1e-4
    )
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.minimum_detectable(0.02, 0.0, 1, 2000, 0.05)


def test_power_is_finite_far_in_the_tail():
    # scipy's noncentral t returns NaN for some large noncentralities at fractional df.
    for df_seeds in range(2, 12):
        for delta in np.linspace(0.0, 0.5, 51):
            value = stats.power(float(delta), 0.01, 0.0001**2, df_seeds, 2007, 0.004)
            assert 0 <= value <= 1


# --------------------------------------------------------------------------- improvement


def test_improvement_by_hand():
    # Seed 0: init right on 3 images, random on 2 (init better); seed 1: both on 2 (tied);
    # seed 2: init 1, random 2 (worse). Images only the init gets: seed 0 image 2, seed 2
    # none ... counted below.
    right = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]], bool)
    reference = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], bool)
    out = stats.improvement(right, reference)
    assert (out["seeds_better"], out["seeds_worse"], out["seeds_tied"]) == (1, 1, 1)
    assert out["p_seeds"] == pytest.approx(0.5)
    # init only: (0, 2), (1, 1) = 2 of 12; random only: (1, 2), (2, 0) = 2 of 12.
    assert out["images_init_only"] == pytest.approx(2 / 12)
    assert out["images_reference_only"] == pytest.approx(2 / 12)
    assert out["p_images"] == pytest.approx(0.5)
    better = stats.improvement(right | True, reference)
    assert better["seeds_better"] == 3 and better["p_seeds"] == 1.0 and better["p_images"] > 0.5
