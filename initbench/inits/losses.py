"""Contrastive losses for self-supervised pretraining."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from initbench.training import distributed


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent, the SimCLR loss (Chen et al. 2020, "A Simple Framework for Contrastive
    Learning of Visual Representations", Algorithm 1).

    ``z1`` and ``z2`` are ``(N, D)`` projections of two views of the same ``N`` images. All
    ``2N`` rows are anchors; each has one positive (the other view of its image) and ``2N - 2``
    negatives (every other row of both views). With ``s`` the cosine similarity and ``tau`` the
    paper's symbol for ``temperature``::

        l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )
        L = 1 / (2N) * sum_k [ l(2k-1, 2k) + l(2k, 2k-1) ]

    Self-similarity is masked with ``-inf`` (not subtracted) and the sum is a log-sum-exp, so
    the loss is stable for any temperature. With ``N == 1`` there are no negatives and the loss
    is exactly 0. It is computed in float32 even under mixed-precision autocast: bfloat16
    rounds cosine similarities near 1 in steps of about 0.004 (2% error in the gradient), and
    float16 overflows for very small temperatures.

    Returns:
        A scalar tensor, differentiable with respect to ``z1`` and ``z2``.

    Raises:
        ValueError: ``z1`` and ``z2`` are not 2-D with the same shape, ``N < 1``, ``D < 1``,
            or ``temperature`` is not a positive number.
    """
    if z1.dim() != 2 or z2.dim() != 2:
        raise ValueError(
            f"nt_xent needs two (N, D) tensors, got shapes {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}; flatten the projections first"
        )
    if z1.shape != z2.shape:
        raise ValueError(
            f"nt_xent needs z1 and z2 of the same shape (one row per image in each view), "
            f"got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    n, d = z1.shape
    if n < 1 or d < 1:
        raise ValueError(f"nt_xent needs at least one pair of non-empty rows, got shape {(n, d)}")
    if not temperature > 0:  # also refuses NaN
        raise ValueError(f"temperature must be > 0 (SimCLR uses 0.1 to 0.5), got {temperature}")

    with torch.autocast(z1.device.type, enabled=False):  # float32 (see above)
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, D), unit rows
        logits = z @ z.T / temperature  # (2N, 2N) cosine similarity / tau
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        # Row i < N is view 1 of image i, its positive is row i + N; and the reverse.
        index = torch.arange(n, device=z.device)
        targets = torch.cat([index + n, index])  # (2N,)
        return F.cross_entropy(logits, targets)


def gathered_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`nt_xent` over the global batch of a process group.

    ``z1`` and ``z2`` are this process's ``(n, D)`` projections of its ``n`` images; the rows
    of every process are gathered with gradients (:func:`initbench.training.distributed.gather_rows`),
    so each anchor has the ``2N - 2`` negatives of all ``N = world_size * n`` images, as in
    SimCLR's multi-device training (Chen et al. 2020, Sec. 2.2: negatives from every
    device). Every process gets the same value, the loss of the concatenated batch; the
    gather's backward sums the processes' gradients and DDP averages them, so a step
    follows that loss's gradient. In a single process it is exactly ``nt_xent(z1, z2)``;
    the gather is the only thing here that looks beyond the inputs.

    Raises:
        ValueError: as :func:`nt_xent`.
    """
    # float32 before the gather, so its backward also sums the processes' gradients in float32
    z1, z2 = z1.float(), z2.float()
    return nt_xent(distributed.gather_rows(z1), distributed.gather_rows(z2), temperature)
