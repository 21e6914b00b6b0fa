"""Two levels of repeats: pretraining seeds, and fine-tune seeds within each.

With ``compare.finetune_seeds`` listing ``F >= 2`` repeats, every pretraining checkpoint
(seed ``s``) is fine-tuned ``F`` times, and the design is nested: fine-tune seed ``f``
within seed ``s``. The verdicts stay on the per-seed means over fine-tune seeds (the
seeds are the independent units, :mod:`initbench.comparison.stats`); here the spread of
one run's paired difference ``D[s, f]`` is split into the two levels (balanced one-way
random effects, method of moments; Searle, Casella & McCulloch 1992, ch. 3):
``MS_within = sum (D - mean_f D)^2 / (S (F - 1))`` estimates the fine-tune part
``var_finetune``, and ``(MS_between - MS_within) / F`` with ``MS_between = F var_s(mean_f
D)`` the pretraining part ``var_pretraining`` (floored at 0). A seed's mean over ``F``
fine-tune seeds then varies by ``var_pretraining + var_finetune / F``, which says whether
more fine-tune seeds (no pretraining) or more seeds (pretraining too) would decide a cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from initbench.comparison.stats import MOST_SEEDS, POWER, fewest, power


@dataclass(frozen=True)
class Levels:
    """Variances of one run's paired difference (accuracy units squared), by level."""

    pretraining: float  # between pretraining seeds
    finetune: float  # between fine-tune seeds of one checkpoint


def nested_components(d: np.ndarray) -> Levels:
    """The two levels' variance components of per-run paired differences.

    Args:
        d: float ``(S, F)``: the difference in test accuracy of seed ``s``, fine-tune seed
            ``f``.

    Raises:
        ValueError: ``d`` is not 2-D with ``S >= 2`` and ``F >= 2``.
    """
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2:
        raise ValueError(
            f"need a (seeds, finetune_seeds) array with both sizes >= 2, got {d.shape}"
        )
    seeds, repeats = d.shape
    means = d.mean(axis=1)
    within = float(((d - means[:, None]) ** 2).sum()) / (seeds * (repeats - 1))
    between = repeats * float(means.var(ddof=1))
    return Levels(pretraining=max(0.0, (between - within) / repeats), finetune=within)


def finetune_seeds_to_decide(
    levels: Levels, seed_sd: float, repeats: int, var_test: float, seeds: int, images: int,
    margin: float, alpha: float, target: float = POWER, most: int = MOST_SEEDS,
) -> int | None:  # fmt: skip
    """The fewest fine-tune seeds that, at the current ``seeds`` pretraining seeds, give the
    t-test power ``target`` against a true difference of ``margin``; ``None`` when even
    ``most`` do not (the pretraining part, or the test set's, is then too large for the
    margin at these seeds, and only more seeds help).

    The spread of a seed's mean over ``r`` repeats is planned as the observed ``seed_sd``
    (over seeds, at the current ``repeats``) with its fine-tune part rescaled:
    ``max(seed_sd**2 + finetune * (1 / r - 1 / repeats), 0)``, so at ``r = repeats`` the
    plan is the observed spread, as :func:`initbench.comparison.stats.seeds_to_decide`
    plans with.

    Raises:
        ValueError: ``seeds < 2`` or ``repeats < 1``.
    """
    if seeds < 2 or repeats < 1:
        raise ValueError("planning fine-tune seeds needs at least 2 seeds and 1 repeat")

    def enough(count: int) -> bool:
        sd = math.sqrt(max(seed_sd**2 + levels.finetune * (1 / count - 1 / repeats), 0.0))
        return power(margin, sd, var_test, seeds, images, alpha) >= target

    return fewest(enough, 1, most)
