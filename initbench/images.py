"""Pictures for ``dvc plots``: image grids and conv filters, as uint8 arrays (no file I/O)."""

from __future__ import annotations

import numpy as np


def tile(images: np.ndarray, columns: int, scale: int = 1, gap: int = 1) -> np.ndarray:
    """Lay out uint8 ``(N, C, H, W)`` images in a grid; returns ``(H', W')`` or ``(H', W', 3)``.

    Each image is enlarged ``scale`` times (nearest neighbour); cells are separated by
    ``gap`` pixels of mid-gray.
    """
    n, c, h, w = images.shape
    rows = (n + columns - 1) // columns
    cell_h, cell_w = h * scale, w * scale
    canvas = np.full(
        (rows * (cell_h + gap) + gap, columns * (cell_w + gap) + gap, c), 128, dtype=np.uint8
    )
    for index in range(n):
        r, col = divmod(index, columns)
        big = images[index].transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)
        top, left = gap + r * (cell_h + gap), gap + col * (cell_w + gap)
        canvas[top : top + cell_h, left : left + cell_w] = big
    return canvas[:, :, 0] if c == 1 else canvas


def filters_to_uint8(weight: np.ndarray) -> np.ndarray:
    """Conv weights ``(K, C, kh, kw)`` -> uint8, each filter stretched to 0..255 on its own."""
    flat = weight.reshape(len(weight), -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = (flat - low) / np.where(span > 0, span, 1.0)
    return np.rint(scaled * 255).astype(np.uint8).reshape(weight.shape)
