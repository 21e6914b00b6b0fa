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
