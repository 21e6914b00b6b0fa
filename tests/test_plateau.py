"""The plateau check of a training curve (initbench.training.plateau), on synthetic curves
and on one real short training run."""

import numpy as np
import pytest
import torch

from initbench.data.dataset import Split
from initbench.data.transforms import Normalize
from initbench.models.cnn import build_classifier
from initbench.training.plateau import MIN_POINTS, plateau_check
from initbench.training.setup import set_seed
from initbench.training.supervised import fit


def _toy_split(n, seed):
    """Three classes told apart by brightness, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    noise = torch.randint(0, 30, (n, 1, 16, 16), generator=generator)
    return Split(((labels * 100 + 20).view(n, 1, 1, 1) + noise).to(torch.uint8), labels)


def test_a_flat_curve_is_at_a_plateau():
    out = plateau_check([0.5] * 300)
    assert out.reached is True and abs(out.change) < 1e-12 and out.points == 100


def test_a_noisy_flat_curve_is_at_a_plateau():
    rng = np.random.default_rng(0)
    out = plateau_check(0.3 + rng.normal(0, 0.05, 600))
    assert out.reached is True
    assert abs(out.change) < out.noise and out.noise == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize("sign", [-1, 1])
def test_a_curve_still_moving_by_more_than_its_noise_is_not(sign):
    # Falling (a loss still learning) or rising (an accuracy still climbing): over the last
    # third the line moves 0.2, four times the noise.
    rng = np.random.default_rng(1)
    steps = np.arange(600)
    out = plateau_check(1.0 + sign * 0.2 * steps / 200 + rng.normal(0, 0.05, 600))
    assert out.reached is False
    assert out.change == pytest.approx(sign * 0.2, abs=0.04) and abs(out.change) > out.noise


def test_a_decaying_loss_reaches_its_plateau_late():
    # exp(-t / 100) plus noise 0.01: after 300 steps the last third still falls 0.03;
    # after 3,000 it has settled.
    rng = np.random.default_rng(2)
    curve = lambda n: np.exp(-np.arange(n) / 100) + rng.normal(0, 0.01, n)  # noqa: E731
    assert plateau_check(curve(300)).reached is False
    assert plateau_check(curve(3000)).reached is True


def test_too_few_points_give_no_verdict():
    out = plateau_check([1.0, 0.5, 0.2])
    assert out.reached is None and out.points < MIN_POINTS
    assert "too few steps" in out.describe("loss")


def test_a_real_short_run_is_checked_on_its_per_step_loss():
    # A few steps from random init are still learning; many steps on the same easy task
    # settle.
    def run(steps):
        set_seed(0)
        model = build_classifier(1, 16, 3, [4, 8, 8], [0.0] * 3, 16, 0.0)
        return fit(model, Normalize([0.5], [0.25]), _toy_split(60, 0), _toy_split(30, 1),
                   epochs=1, min_steps=steps, lr=0.01, batch_size=16, seed=0,
                   device=torch.device("cpu"),
                   log=lambda line: None).plateau  # fmt: skip

    torch.set_num_threads(1)
    early, late = run(30), run(600)
    assert early.points == 10 and early.reached is False and early.change < 0
    assert late.points == 200 and late.reached is True
