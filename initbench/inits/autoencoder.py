"""Convolutional autoencoder pretraining of the classifier's encoder.

The encoder is exactly the classifier's conv stack; the decoder mirrors it
(conv, BatchNorm, LeakyReLU, 2x upsample per block) and ends in a 3x3 conv and
a sigmoid, so it reconstructs images on the 0..1 scale. Trained with MSE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from initbench.data.dataset import Split
from initbench.data.transforms import Normalize
from initbench.models.cnn import Encoder
from initbench.models.sizes import LEAKY_SLOPE
from initbench.training import distributed
from initbench.training.loop import EVAL_BATCH_SIZE, Round, batches, optimize, step_budget
from initbench.training.plateau import Plateau, grown_budget, plateau_check

#: Val images in the stage's reconstruction picture.
RECONSTRUCTIONS_SHOWN = 16


class Decoder(nn.Module):
    """Mirror of :class:`Encoder`: ``(B, channels[-1], h, w) -> (B, out_channels, 2**n h, 2**n w)``."""

    def __init__(self, out_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        widths = list(reversed(channels))  # e.g. [64, 32, 16]
        targets = [*widths[1:], widths[-1]]  # e.g. [32, 16, 16]
        self.blocks = nn.Sequential(*(
            nn.Sequential(
                nn.Conv2d(w_in, w_out, kernel_size=3, padding=1),
                nn.BatchNorm2d(w_out),
                nn.LeakyReLU(LEAKY_SLOPE),
                nn.Upsample(scale_factor=2, mode="nearest"),
            )
            for w_in, w_out in zip(widths, targets, strict=True)
        ))  # fmt: skip
        self.output = nn.Conv2d(targets[-1], out_channels, kernel_size=3, padding=1)
        self.to(memory_format=torch.channels_last)  # as the Encoder: faster on CPU

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.output(self.blocks(features)))


class AutoEncoder(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) normalized -> (B, C, H, W) on 0..1
        out = self.decoder(self.encoder(x))
        if out.shape[-2:] != x.shape[-2:]:  # sizes not divisible by 2**n lose pixels in pooling
            out = nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear")
        return out


def build_autoencoder(encoder: Encoder, channels: Sequence[int]) -> AutoEncoder:
    return AutoEncoder(encoder, Decoder(encoder.in_channels, channels))


def _targets(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


@torch.no_grad()
def reconstruction_loss(
    model: AutoEncoder, normalize: Normalize, split: Split, device: torch.device
) -> float:
    """Mean squared error per pixel over ``split``, in eval mode."""
    model.eval()
    total = 0.0
    for images, _ in batches(split, EVAL_BATCH_SIZE):
        images = images.to(device)
        out = model(normalize(images))
        total += nn.functional.mse_loss(out, _targets(images), reduction="sum").item()
    return total / split.images.numel()


def mean_image_loss(train: Split, val: Split) -> float:
    """The baseline: MSE on ``val`` of always predicting the mean train image."""
    mean_image = _targets(train.images).mean(dim=0, keepdim=True)
    return nn.functional.mse_loss(mean_image.expand_as(val.images), _targets(val.images)).item()


@torch.no_grad()
def reconstructions(
    model: AutoEncoder,
    normalize: Normalize,
    split: Split,
    device: torch.device,
    shown: int = RECONSTRUCTIONS_SHOWN,
) -> tuple[np.ndarray, np.ndarray]:
    """``shown`` evenly spaced images of ``split`` (so across classes, which ingest sorts
    by) and ``model``'s reconstructions of them, in eval mode.

    Returns:
        ``(inputs, outputs)``, each uint8 ``(n, C, H, W)`` with ``n = min(shown, len(split))``.
    """
    model.eval()
    index = torch.linspace(0, len(split) - 1, min(shown, len(split))).long()
    inputs = split.images[index]
    outputs = model(normalize(inputs.to(device))).cpu()
    outputs = (outputs * 255).round().clamp(0, 255).to(torch.uint8)
    return inputs.numpy(), outputs.numpy()


@dataclass
class AutoencoderResult:
    history: list[dict[str, float]]
    train_loss: float
    val_loss: float
    steps: int  # optimizer steps
    images_seen: int  # training images over all steps (each image once a pair for SimCLR)
    plateau: Plateau  # the per-step training loss over the last third of the budget


def train_autoencoder(
    model: AutoEncoder,
    normalize: Normalize,
    train: Split,
    val: Split,
    *,
    epochs: int,
    min_steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    log: Callable[[str], None] = tqdm.write,
    on_history: Callable[[list[dict[str, float]]], None] | None = None,
    max_steps: int | None = None,
) -> AutoencoderResult:
    """Adam on per-pixel MSE between the decoder's output and the 0..1 input, for
    :func:`initbench.training.loop.step_budget` steps; val MSE once a round. Labels are unused.
    With ``max_steps`` above that floor the budget grows until the train MSE is at a
    plateau (:func:`initbench.training.plateau.plateau_stop`), at most ``max_steps``.

    In a process group (:mod:`initbench.training.distributed`) the model trains as
    ``DistributedDataParallel`` on shards of each global batch of ``batch_size`` images, and
    every process computes the val and train losses alike. ``on_history`` (if given) gets
    the history so far after each round, so a stage can write it as training goes."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps, stop = grown_budget(step_budget(len(train), batch_size, epochs, min_steps), max_steps)
    history: list[dict[str, float]] = []
    net = distributed.data_parallel(model, device, seed)  # ``model`` in a single process

    def loss_fn(images: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        images = images.to(device)
        return nn.functional.mse_loss(net(normalize(images)), _targets(images))

    def on_round(r: Round) -> None:
        distributed.broadcast_buffers(model)
        val_loss = reconstruction_loss(model, normalize, val, device)
        history.append({"step": r.step, "epoch": round(r.epoch, 4),
                        "train_loss": round(r.loss, 6), "val_loss": round(val_loss, 6)})  # fmt: skip
        if on_history is not None:
            on_history(history)
        log(f"round {r.index:>2}/{r.rounds}  step {r.step:>5}/{steps}  train_mse {r.loss:.5f}"
            f"  val_mse {val_loss:.5f}  {r.images_per_s:,.0f} img/s")  # fmt: skip
        model.train()

    model.train()
    losses = optimize(optimizer, train, batch_size=batch_size, steps=steps, generator=generator,
             loss_fn=loss_fn, on_round=on_round, desc="autoencoder", device=device,
             stop=stop)  # fmt: skip
    return AutoencoderResult(
        history=history,
        train_loss=reconstruction_loss(model, normalize, train, device),
        val_loss=history[-1]["val_loss"],
        steps=len(losses),
        images_seen=len(losses) * min(batch_size, len(train)),
        plateau=plateau_check(losses),
    )
