"""The statistics of the comparison, stated before the code. Pure functions on arrays.

A *paired difference* compares one init with ``random`` on the same test images, run by
run: for seed ``s`` and test image ``j``, ``d[s, j] = right(init, s, j) - right(random, s, j)``
is -1, 0 or +1, and the difference in test accuracy is its mean. Two things make that mean
noisy, and the interval counts both:

- **Seeds** (training): each seed re-runs pretraining and draws the label subset, head
  init, data order and dropout masks (with fine-tune repeats, ``d[s]`` is the mean over a
  seed's repeats, each drawing its own: :mod:`initbench.comparison.levels`). More seeds
  shrink this part.
- **The test set**: the test images are one sample of the images the user cares about;
  another sample would give another difference. More seeds never shrink this part.

Variance components (two-way crossed random effects without replication, method of
moments; e.g. Searle, Casella & McCulloch 1992, ch. 4): with ``S`` seeds and ``N`` test
images, mean squares ``MS_seed = N var_s(mean_j d)``, ``MS_image = S var_j(mean_s d)`` and
the residual ``MS_res`` give the unbiased estimate ``Var(mean d) = (MS_seed + MS_image -
MS_res) / (S N)``, reported as a *seeds* part ``var_s(mean_j d) / S`` (training noise as
this test set shows it, interactions included) and a *test-set* part ``(MS_image - MS_res)
/ (S N)`` (what another test set would change; floored at 0). With one seed the seeds part
is unknown and the test-set part is ``var_j(d) / N``, the paired standard error of two
models scored on the same images. Degrees of freedom are Welch-Satterthwaite's over the
two parts (``S - 1`` and ``N - 1``).

Tests and intervals (Student's t on that standard error; Dror et al. 2018, "The
Hitchhiker's Guide to Testing Statistical Significance in NLP", for paired tests in ML):

- difference: two-sided t-test of ``mean d = 0``;
- equivalence: two one-sided tests (TOST; Lakens 2017, "Equivalence Tests", Soc. Psychol.
  Personal. Sci. 8(4)) of ``mean d <= -margin`` and ``mean d >= +margin``, p = the larger;
- multiplicity: the family is every init-vs-random test of the report; Holm's step-down
  adjustment (Holm 1979, Scand. J. Statist. 6(2)) by default, of the difference tests and
  of the equivalence tests each. A test's interval is at the per-test level
  ``alpha * p / p_adjusted``, so it excludes 0 exactly when the adjusted p is below
  ``alpha``; that level lies between Bonferroni's ``alpha / m`` and ``alpha``;
- power: the t-test's power to reject on the side of a true difference ``delta``
  (noncentral t, statsmodels' ``ttest_power``), at the Holm procedure's strictest per-test level ``alpha / m``: the
  minimum detectable difference at the current seeds and the seeds that would detect the
  margin. The seeds part is extrapolated from the observed spread, which few seeds
  estimate roughly (:func:`sd_interval`);
- probability of improvement (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
  Precipice", NeurIPS): the share of paired seeds on which the init beats random, ties
  counting half; and of (seed, test image) pairs, from the stored predictions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import ttest_power

CONFIDENCE = 0.95
POWER = 0.8
CORRECTIONS: tuple[str, ...] = ("holm", "none")
#: The planner's search stops here: beyond it, more seeds is not a practical answer.
MOST_SEEDS = 10_000

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, TOO_FEW = (
    "better",
    "worse",
    "equivalent",
    "inconclusive",
    "too few seeds",
)
#: Qualifiers of a better/worse verdict.
BEYOND_MARGIN, WITHIN_MARGIN = "beyond the margin", "within the margin"


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


def sd_interval(sd: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Chi-square confidence interval of a standard deviation estimated from ``n`` values.

    Raises:
        ValueError: ``n < 2``.
    """
    if n < 2:
        raise ValueError("a standard deviation needs at least 2 values")
    tail = (1 - confidence) / 2
    return (sd * math.sqrt((n - 1) / stats.chi2.ppf(1 - tail, n - 1)),
            sd * math.sqrt((n - 1) / stats.chi2.ppf(tail, n - 1)))  # fmt: skip


def welch_df(var_seeds: float, seeds: int, var_test: float, images: int) -> float:
    """Welch-Satterthwaite degrees of freedom of ``var_seeds + var_test`` (squared standard
    errors with ``seeds - 1`` and ``images - 1`` degrees of freedom); ``inf`` for a zero sum."""
    total = var_seeds + var_test
    if total == 0:
        return math.inf
    spread = var_seeds**2 / max(seeds - 1, 1) + var_test**2 / max(images - 1, 1)
    return total**2 / spread


@dataclass(frozen=True)
class PairedDifference:
    """An init's difference in test accuracy to random, and its noise by source."""

    mean: float  # mean over seeds and test images, in accuracy units
    seeds: int
    images: int
    seed_sd: float | None  # std over seeds of the per-seed difference; None with one seed
    var_seeds: float | None  # squared standard error from seeds; None with one seed
    var_test: float  # squared standard error from test-set sampling

    @property
    def se(self) -> float:
        """Standard error of :attr:`mean`, both sources (the test-set part alone with one seed)."""
        return math.sqrt((self.var_seeds or 0.0) + self.var_test)

    @property
    def df(self) -> float:
        return welch_df(self.var_seeds or 0.0, self.seeds, self.var_test, self.images)


def paired_difference(right: np.ndarray, reference_right: np.ndarray) -> PairedDifference:
    """The paired difference of two sets of runs scored on the same test images.

    Args:
        right: bool ``(S, N)``: whether the init's run at seed ``s`` got test image ``j`` right.
        reference_right: the same for the reference (random) at the same seeds.

    Raises:
        ValueError: the shapes differ.
    """
    if right.shape != reference_right.shape:
        raise ValueError(f"paired runs need equal (seeds, images) shapes, got {right.shape} "
                         f"and {reference_right.shape}")  # fmt: skip
    return variance_components(right.astype(np.float64) - reference_right.astype(np.float64))


def variance_components(d: np.ndarray) -> PairedDifference:
    """The mean of ``d`` and its squared standard error by source (module docstring).

    Args:
        d: float ``(S, N)``: seed ``s``'s difference on test image ``j``.

    Raises:
        ValueError: ``d`` is not 2-D, or has no seed or no image.
    """
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"need a (seeds, images) array with both sizes >= 1, got {d.shape}")
    seeds, images = d.shape
    per_seed, per_image = d.mean(axis=1), d.mean(axis=0)
    image_var = float(per_image.var(ddof=1)) if images > 1 else 0.0
    if seeds == 1:
        return PairedDifference(float(d.mean()), 1, images, None, None, image_var / images)
    residual = d - per_seed[:, None] - per_image[None, :] + d.mean()
    ms_residual = float((residual**2).sum()) / ((seeds - 1) * max(images - 1, 1))
    seed_sd = float(per_seed.std(ddof=1))
    return PairedDifference(
        mean=float(d.mean()), seeds=seeds, images=images, seed_sd=seed_sd,
        var_seeds=seed_sd**2 / seeds,
        var_test=max(0.0, (seeds * image_var - ms_residual) / (seeds * images)),
    )  # fmt: skip


def t_test(mean: float, se: float, df: float) -> float:
    """Two-sided p-value of ``mean = 0`` for an estimate with standard error ``se``."""
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * stats.t.sf(abs(mean) / se, df))


def tost(mean: float, se: float, df: float, margin: float) -> float:
    """TOST p-value (Lakens 2017) that ``mean`` lies inside ``(-margin, +margin)``: the
    larger of the one-sided p-values against ``<= -margin`` and ``>= +margin``."""
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = stats.t.sf((mean + margin) / se, df)
    upper = stats.t.cdf((mean - margin) / se, df)
    return float(max(lower, upper))


def adjust(pvalues: Sequence[float], correction: str, alpha: float = 1 - CONFIDENCE) -> list[float]:
    """Multiplicity-adjusted p-values: Holm (statsmodels ``multipletests``) or ``none``.

    Raises:
        ValueError: ``correction`` is not one of :data:`CORRECTIONS`.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    if correction == "none" or not pvalues:
        return [float(p) for p in pvalues]
    return [float(p) for p in multipletests(list(pvalues), alpha=alpha, method="holm")[1]]


def interval(
    mean: float, se: float, df: float, p: float, p_adjusted: float, alpha: float
) -> tuple[float, float, float]:
    """The two-sided interval consistent with the adjusted test: at level ``alpha * p /
    p_adjusted`` (``alpha`` when nothing was adjusted), so it excludes 0 exactly when
    ``p_adjusted < alpha``.

    Returns:
        ``(low, high, confidence)``.
    """
    level = alpha if p_adjusted <= 0 or p_adjusted == p else alpha * p / p_adjusted
    half = float(stats.t.ppf(1 - level / 2, df)) * se if se > 0 else 0.0
    return mean - half, mean + half, 1 - level


def verdict(
    low: float, high: float, tost_p_adjusted: float, margin: float, alpha: float = 1 - CONFIDENCE
) -> tuple[str, str | None]:
    """The verdict on a paired difference, and a qualifier of better or worse.

    Precedence: an interval that excludes 0 gives *better* or *worse*, qualified *beyond the
    margin* when it also excludes that side's margin, or *within the margin* when the
    adjusted TOST also holds (a real but small difference); else an adjusted TOST below
    ``alpha`` gives *equivalent* (within ``+-margin``); else *inconclusive*.
    """
    equivalent = tost_p_adjusted < alpha
    for direction, excluded, beyond in ((BETTER, low > 0, low > margin),
                                        (WORSE, high < 0, high < -margin)):  # fmt: skip
        if excluded:
            return direction, BEYOND_MARGIN if beyond else WITHIN_MARGIN if equivalent else None
    return (EQUIVALENT if equivalent else INCONCLUSIVE), None


def power(
    delta: float, seed_sd: float, var_test: float, seeds: int, images: int, alpha: float
) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``seeds`` seeds when
    the true difference is ``delta``: the seeds part ``seed_sd**2 / seeds`` plus the fixed
    test-set part ``var_test``, Welch-Satterthwaite degrees of freedom."""
    var_seeds = seed_sd**2 / seeds
    se = math.sqrt(var_seeds + var_test)
    if se == 0:
        return 1.0 if delta != 0 else alpha
    df = welch_df(var_seeds, seeds, var_test, images)
    noncentrality = abs(delta) / se
    # The rejections on delta's side: the other tail adds under alpha / 2, and nothing that
    # matters once the power does; scipy's noncentral t gives NaN there at some df.
    value = float(ttest_power(noncentrality, nobs=1, alpha=alpha / 2, df=df, alternative="larger"))
    if math.isnan(value):  # far in the tail (noncentrality over 30), where the power is 1
        if noncentrality <= 2 * stats.t.isf(alpha / 2, df):
            raise ArithmeticError(f"no power for noncentrality {noncentrality:g}, df {df:g}")
        return 1.0
    return value


def minimum_detectable(
    seed_sd: float, var_test: float, seeds: int, images: int, alpha: float, target: float = POWER
) -> float:
    """The smallest true difference (accuracy units) the t-test detects with power
    ``target`` at ``seeds`` seeds and level ``alpha``.

    Raises:
        ValueError: ``seeds < 2``.
    """
    if seeds < 2:
        raise ValueError("a minimum detectable difference needs at least 2 seeds")
    se = math.sqrt(seed_sd**2 / seeds + var_test)
    if se == 0:
        return 0.0
    return float(optimize.brentq(
        lambda delta: power(delta, seed_sd, var_test, seeds, images, alpha) - target,
        0.0, 1000 * se, xtol=1e-9,
    ))  # fmt: skip


def seeds_to_decide(
    seed_sd: float, var_test: float, images: int, margin: float, alpha: float,
    target: float = POWER, most: int = MOST_SEEDS,
) -> int | None:  # fmt: skip
    """The fewest seeds (at least 2) whose t-test detects a true difference of ``margin``
    with power ``target``; ``None`` when even ``most`` seeds do not (the test-set part,
    which seeds do not shrink, is then too large for the margin)."""
    return fewest(lambda n: power(margin, seed_sd, var_test, n, images, alpha) >= target, 2, most)


def fewest(enough: Callable[[int], bool], least: int, most: int) -> int | None:
    """The fewest count in ``[least, most]`` for which ``enough`` holds, by bisection;
    ``enough`` must hold for every count above one where it holds (power grows with
    replicates). ``None`` when even ``most`` is not enough."""
    if not enough(most):
        return None
    low, high = least - 1, most  # enough(high); below least counts as not enough
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def improvement(right: np.ndarray, reference_right: np.ndarray) -> dict[str, Any]:
    """How often the init beats the reference (Agarwal et al. 2021's probability of
    improvement, ties counting half), per paired run and per (run, test image).

    Args:
        right, reference_right: bool ``(R, N)``: one row a paired run (a seed, or a seed's
            fine-tune repeat), as in :func:`paired_difference`.

    Returns:
        ``seeds_better``, ``seeds_worse``, ``seeds_tied`` (counts of per-run accuracy
        differences > 0, < 0, = 0: runs, which are seeds when each seed has one run),
        ``p_seeds``; ``images_init_only`` and ``images_reference_only`` (shares of (run,
        image) pairs that only the init, or only the reference, gets right) and
        ``p_images``.
    """
    d = right.astype(np.int64) - reference_right.astype(np.int64)
    per_seed = d.sum(axis=1)
    better, worse = int((per_seed > 0).sum()), int((per_seed < 0).sum())
    tied = len(per_seed) - better - worse
    init_only, reference_only = float((d > 0).mean()), float((d < 0).mean())
    return {"seeds_better": better, "seeds_worse": worse, "seeds_tied": tied,
            "p_seeds": (better + tied / 2) / len(per_seed),
            "images_init_only": init_only, "images_reference_only": reference_only,
            "p_images": 0.5 + (init_only - reference_only) / 2}  # fmt: skip
