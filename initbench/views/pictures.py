"""Pictures for ``dvc plots``: image grids and conv filters, as uint8 arrays (no file I/O)."""

from __future__ import annotations

import numpy as np


def tile(images: np.ndarray, columns: int, scale: int = 1, gap: int = 1) -> np.ndarray:
    """Lay out uint8 ``(N, C, H, W)`` images in a grid; returns ``(H', W')`` or ``(H', W', 3)``.

    Each image is enlarged ``scale`` times (nearest neighbour); cells are separated by
    ``gap`` pixels of mid-gray, as are empty cells. The layout is torchvision's
    ``make_grid``.
    """
    import torch
    from torchvision.utils import make_grid

    batch = torch.from_numpy(np.ascontiguousarray(images))
    batch = batch.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = make_grid(batch, nrow=columns, padding=gap, pad_value=128)  # (3, H', W')
    grid = grid.permute(1, 2, 0).numpy()
    return np.ascontiguousarray(grid[:, :, 0] if images.shape[1] == 1 else grid)


def filters_to_uint8(weight: np.ndarray) -> np.ndarray:
    """Conv weights ``(K, C, kh, kw)`` -> uint8, each filter stretched to 0..255 on its own."""
    flat = weight.reshape(len(weight), -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = (flat - low) / np.where(span > 0, span, 1.0)
    return np.rint(scaled * 255).astype(np.uint8).reshape(weight.shape)
