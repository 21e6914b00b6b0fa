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


def test_finetune_seeds_to_decide_falls_as_the_finetune_part_dominates():
    args = dict(var_test=1e-6, seeds=5, images=2000, margin=0.01, alpha=0.05)
    mostly_finetune = finetune_seeds_to_decide(Levels(1e-6, 4e-4), **args)
    assert mostly_finetune is not None and mostly_finetune > 1

    # The count is the smallest that reaches the power, as stats.power computes it.
    def powered(repeats):
        sd = (1e-6 + 4e-4 / repeats) ** 0.5
        return stats.power(0.01, sd, 1e-6, 5, 2000, 0.05) >= stats.POWER

    assert powered(mostly_finetune) and not powered(mostly_finetune - 1)
    # A large pretraining part: no number of repeats is enough at these seeds.
    assert finetune_seeds_to_decide(Levels(4e-4, 4e-4), **args) is None
    with pytest.raises(ValueError, match="at least 2 seeds"):
        finetune_seeds_to_decide(Levels(0, 1e-4), 1e-6, 1, 2000, 0.01, 0.05)
