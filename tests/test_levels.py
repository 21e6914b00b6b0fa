"""Tests of the two levels of repeats (initbench.comparison.levels) and of how the summary
and report use them."""

from __future__ import annotations

import numpy as np
import pytest

from initbench.comparison import stats
from initbench.comparison.levels import Levels, finetune_seeds_to_decide, nested_components


def test_nested_components_recover_known_levels():
    rng = np.random.default_rng(0)
    seeds, repeats = 400, 6
    d = 0.02 + rng.normal(0, 0.03, (seeds, 1)) + rng.normal(0, 0.01, (seeds, repeats))
    split = nested_components(d)
    assert split.pretraining**0.5 == pytest.approx(0.03, rel=0.1)
    assert split.finetune**0.5 == pytest.approx(0.01, rel=0.05)


def test_nested_components_of_repeat_only_noise_give_no_pretraining_part():
    d = np.array([[0.01, -0.01], [0.01, -0.01], [0.01, -0.01]])  # equal seed means
    split = nested_components(d)
    assert split.pretraining == 0.0 and split.finetune == pytest.approx(2e-4)


@pytest.mark.parametrize("shape", [(1, 3), (3, 1), (6,)])
def test_nested_components_need_two_of_each_level(shape):
    with pytest.raises(ValueError, match="both sizes >= 2"):
        nested_components(np.zeros(shape))


def test_finetune_seeds_to_decide_plans_from_the_observed_spread():
    # Observed at 2 repeats: seed_sd^2 = 1e-5 (pretraining) + 2e-4 / 2 (fine-tune).
    split, seeds, images, margin, alpha = Levels(1e-5, 2e-4), 5, 2000, 0.01, 0.05
    seed_sd = (1e-5 + 2e-4 / 2) ** 0.5
    need = finetune_seeds_to_decide(split, seed_sd, 2, 1e-6, seeds, images, margin, alpha)
    # By hand: 5 seeds need a seed spread near 3e-5 at this margin (t ~ 2.8 + 0.9), so
    # 1e-5 + 2e-4 / r <= 3e-5 gives r near 10.
    assert need is not None and 8 <= need <= 12

    # The plan at `need` repeats decides with 5 seeds, one repeat fewer does not, as the
    # seed planner (a separate function) says for the same spreads.
    def seeds_needed(repeats):
        sd = (seed_sd**2 + 2e-4 * (1 / repeats - 1 / 2)) ** 0.5
        return stats.seeds_to_decide(sd, 1e-6, images, margin, alpha)

    assert seeds_needed(need) <= seeds < seeds_needed(need - 1)


def test_finetune_seeds_to_decide_agrees_with_the_seed_planner_at_the_current_repeats():
    """Decidable now (by seeds_to_decide at the observed spread) means no more repeats,
    even when the pretraining part was floored at 0."""
    split = Levels(0.0, 4e-4)  # floored: the observed seed spread is below 4e-4 / 2
    seed_sd = 0.001
    assert stats.seeds_to_decide(seed_sd, 1e-6, 2000, 0.01, 0.05) <= 5
    assert finetune_seeds_to_decide(split, seed_sd, 2, 1e-6, 5, 2000, 0.01, 0.05) <= 2


def test_finetune_seeds_to_decide_gives_none_when_pretraining_dominates():
    split = Levels(4e-4, 4e-4)
    seed_sd = (4e-4 + 4e-4 / 2) ** 0.5
    assert finetune_seeds_to_decide(split, seed_sd, 2, 1e-6, 5, 2000, 0.01, 0.05) is None
    with pytest.raises(ValueError, match="at least 2 seeds"):
        finetune_seeds_to_decide(split, seed_sd, 2, 1e-6, 1, 2000, 0.01, 0.05)
