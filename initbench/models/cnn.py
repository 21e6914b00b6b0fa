"""The lab report's CNN, with the encoder and the head as separate modules.

Pretraining produces encoder weights; transfer is one load into ``encoder``.

:func:`seeded_encoder` is the random init, the draw every strategy starts from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from initbench.models.sizes import KERNEL_SIZE, LEAKY_SLOPE


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn as ``rand_like(x) >= p``: the same distribution,
    about 2.7x faster to build on CPU than Bernoulli sampling. Identity in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


class ConvBlock(nn.Module):
    """3x3 same conv -> BatchNorm -> LeakyReLU(0.1) -> 2x2 max-pool -> dropout."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=KERNEL_SIZE, padding=KERNEL_SIZE // 2
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.pool = nn.MaxPool2d(2)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, H, W) -> (B, C_out, H // 2, W // 2)
        return self.dropout(self.pool(self.act(self.bn(self.conv(x)))))


class Encoder(nn.Module):
    """The conv stack: ``len(channels)`` blocks, each halving height and width."""

    def __init__(self, in_channels: int, channels: Sequence[int], dropout: Sequence[float]) -> None:
        super().__init__()
        if len(channels) != len(dropout):
            raise ValueError("channels and dropout need one entry per block")
        widths = [in_channels, *channels]
        self.blocks = nn.Sequential(
            *(ConvBlock(widths[i], widths[i + 1], dropout[i]) for i in range(len(channels)))
        )
        self.in_channels = in_channels
        self.out_channels = widths[-1]
        # Channels-last memory layout, weights and activations alike: the same values,
        # CPU max-pool runs several times faster in it and a training step about 1.3x.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, channels[-1], H // 2**n, W // 2**n)
        return self.blocks(x.contiguous(memory_format=torch.channels_last))


class Head(nn.Module):
    """Flatten -> Linear(hidden) -> LeakyReLU -> dropout -> Linear(num_classes)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.LeakyReLU(LEAKY_SLOPE),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # (B, C, h, w) -> (B, num_classes)
        return self.net(features)


class Classifier(nn.Module):
    def __init__(self, encoder: Encoder, head: Head) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, num_classes) logits
        return self.head(self.encoder(x))


def feature_side(image_size: int, n_blocks: int) -> int:
    """Height (= width) of the encoder output for square ``image_size`` inputs."""
    side = image_size
    for _ in range(n_blocks):
        side //= 2
    return side


def build_classifier(
    in_channels: int,
    image_size: int,
    num_classes: int,
    channels: Sequence[int],
    dropout: Sequence[float],
    hidden: int,
    head_dropout: float,
) -> Classifier:
    """The full classifier; its encoder has the same keys as a bare :class:`Encoder`."""
    encoder = Encoder(in_channels, channels, dropout)
    side = feature_side(image_size, len(channels))
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for {len(channels)} 2x2 pools")
    head = Head(encoder.out_channels * side * side, hidden, num_classes, head_dropout)
    return Classifier(encoder, head)


def seeded_encoder(
    in_channels: int, channels: list[int], dropout: list[float], seed: int
) -> Encoder:
    """The encoder every strategy starts from: PyTorch's default init drawn from ``seed``.

    ``random`` saves it as is; pretraining trains it; k-means replaces conv1 only.
    """
    torch.manual_seed(seed)
    return Encoder(in_channels, channels, dropout)
