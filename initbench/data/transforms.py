"""Transforms of uint8 image batches into what the model reads."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """uint8 ``(B, C, H, W)`` -> float, scaled to 0..1 then standardized per channel."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.standardize(images.float() / 255.0)

    def standardize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images already on the 0..1 scale (e.g. augmented views) -> standardized."""
        return (images - self.mean) / self.std


def crop_padding(image_size: int) -> int:
    """Padding of :func:`crop_flip`: an eighth of the side, at least 1 (4 px at 32, as in
    the CIFAR recipe)."""
    return max(1, image_size // 8)


def crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image: the standard
    small-image augmentation (He et al. 2016, "Deep Residual Learning", CIFAR-10 setup;
    the fine-tuning recipe of SimCLR, Chen et al. 2020, uses crop and flip too).

    Each image is padded by ``padding`` zero pixels on every side, a window of its own
    size is cut at a random offset, and it is mirrored left-right with probability 1/2.
    The draws come from ``generator`` (on the CPU) in a fixed layout: row offsets ``(B,)``,
    column offsets ``(B,)``, then flips ``(B,)``; so the same generator state gives the
    same views of any batch of the same size, whatever the images.

    Args:
        images: ``(B, C, H, W)``, any dtype (uint8 before :class:`Normalize`), any device.

    Returns:
        The views, same shape, dtype and device.
    """
    b, _, h, w = images.shape
    rows = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    cols = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    rows = rows[:, None] + torch.arange(h)[None, :]  # (B, H) rows of the padded image
    cols = cols[:, None] + torch.arange(w)[None, :]  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    device = images.device
    index_b = torch.arange(b, device=device)[:, None, None, None]
    index_c = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[index_b, index_c, rows.to(device)[:, None, :, None],
                  cols.to(device)[:, None, None, :]]  # fmt: skip
