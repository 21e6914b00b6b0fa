"""Synthetic images shared by the patch and k-means tests."""

import numpy as np


def silhouettes(n: int, side: int, seed: int) -> np.ndarray:
    """uint8 ``(n, 1, side, side)``: a white ellipse on black, like the embedded dataset's shapes."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:side, :side]
    images = np.zeros((n, 1, side, side), np.uint8)
    for i in range(n):
        center = rng.uniform(side / 3, 2 * side / 3, size=2)
        radii = rng.uniform(side / 8, side / 3, size=2)
        inside = ((rows - center[0]) / radii[0]) ** 2 + ((cols - center[1]) / radii[1]) ** 2 <= 1
        images[i, 0][inside] = 255
    return images


def standardize(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32, standardized per channel (as ``initbench.data.transforms.Normalize``)."""
    x = images.astype(np.float32) / 255
    return (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
