import math

import pytest
import torch
import torch.nn.functional as F

from initbench.inits.losses import nt_xent


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Algorithm 1 of SimCLR, loop by loop, in float64. Views are interleaved as in the
    paper: z[2k] is view 1 and z[2k + 1] is view 2 of image k (0-based)."""
    n = z1.shape[0]
    z = []
    for k in range(n):
        z += [z1[k].double(), z2[k].double()]
    s = [
        [float(z[i] @ z[j] / (z[i].norm() * z[j].norm())) for j in range(2 * n)]
        for i in range(2 * n)
    ]

    def pair_loss(i: int, j: int) -> float:  # the paper's l(i, j)
        denominator = sum(math.exp(s[i][k] / temperature) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s[i][j] / temperature) / denominator)

    return sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(n)) / (
        2 * n
    )


@pytest.mark.parametrize(
    ("n", "d", "temperature"),
    [(1, 3, 0.5), (2, 4, 0.1), (3, 2, 1.0), (5, 8, 0.5), (8, 16, 0.2), (4, 7, 2.0)],
)
def test_matches_naive_algorithm_1(n, d, temperature):
    generator = torch.Generator().manual_seed(n * 100 + d)
    z1 = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=generator, dtype=torch.float64)
    expected = naive_nt_xent(z1, z2, temperature)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(expected, abs=1e-5)
    assert nt_xent(z1.float(), z2.float(), temperature).item() == pytest.approx(expected, abs=1e-5)


def test_one_pair_has_no_negatives_so_zero_loss():
    z1, z2 = torch.randn(1, 5), torch.randn(1, 5)
    assert nt_xent(z1, z2, 0.5).item() == 0.0


@pytest.mark.parametrize("n", [1, 2, 7])
def test_identical_embeddings_give_log_2n_minus_1(n):
    z = torch.ones(n, 4)
    assert nt_xent(z, z.clone(), 0.3).item() == pytest.approx(math.log(2 * n - 1), abs=1e-6)


def test_symmetric_in_its_views():
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    assert torch.allclose(nt_xent(z1, z2, 0.5), nt_xent(z2, z1, 0.5), atol=1e-6)


def test_gradients_are_finite_and_nonzero_for_every_row():
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(4, 6, generator=generator).requires_grad_()
    z2 = torch.randn(4, 6, generator=generator).requires_grad_()
    nt_xent(z1, z2, 0.1).backward()
    for grad in (z1.grad, z2.grad):
        assert torch.isfinite(grad).all()
        assert (grad.norm(dim=1) > 0).all()


def test_stable_at_low_temperature():
    z1, z2 = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.isfinite(nt_xent(z1, z2, 1e-4))


def test_invariant_to_input_scale():
    z1, z2 = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    base = nt_xent(z1, z2, 0.5)
    assert torch.allclose(nt_xent(z1 * 1e3, z2 * 1e-2, 0.5), base, atol=1e-10)
    assert torch.allclose(nt_xent(F.normalize(z1, dim=1), z2 * 7, 0.5), base, atol=1e-10)


@pytest.mark.parametrize(
    ("z1", "z2", "temperature", "match"),
    [
        (torch.randn(3, 4), torch.randn(4, 4), 0.5, "same shape"),
        (torch.randn(3, 4), torch.randn(3, 5), 0.5, "same shape"),
        (torch.randn(3), torch.randn(3), 0.5, r"\(N, D\)"),
        (torch.randn(2, 3, 4), torch.randn(2, 3, 4), 0.5, r"\(N, D\)"),
        (torch.randn(0, 4), torch.randn(0, 4), 0.5, "at least one pair"),
        (torch.randn(3, 4), torch.randn(3, 4), 0.0, "temperature"),
        (torch.randn(3, 4), torch.randn(3, 4), -0.1, "temperature"),
        (torch.randn(3, 4), torch.randn(3, 4), float("nan"), "temperature"),
    ],
)
def test_bad_inputs_are_refused(z1, z2, temperature, match):
    with pytest.raises(ValueError, match=match):
        nt_xent(z1, z2, temperature)


def test_computed_in_float32_under_bfloat16_autocast():
    """Mixed-precision training runs the loss inside autocast; NT-Xent must not follow it
    into bfloat16, which rounds similarities near 1 in steps of about 0.004."""
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(32, 16, generator=generator)
    z2 = z1 + 0.01 * torch.randn(32, 16, generator=generator)  # positives near 1
    expected = nt_xent(z1, z2, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.1)
        in_float32 = nt_xent(z1, z2, 0.1)
    assert got.dtype == in_float32.dtype == torch.float32
    assert torch.equal(in_float32, expected)
    assert torch.allclose(got, expected, rtol=0, atol=5e-3)  # only the inputs were rounded
