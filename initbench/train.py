"""Seeding, devices, and the small supervised loop: ``train_one_epoch`` and ``evaluate``."""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm import tqdm

from initbench.data import Split
from initbench.errors import InitbenchError

EVAL_BATCH_SIZE = 512


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU. Deterministic kernels are on for CPU.

    Raises:
        InitbenchError: ``cuda`` was asked for and none is available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InitbenchError("device: cuda was asked for, but no CUDA device is available")
    device = torch.device(name)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        # As deterministic as CUDA allows: some kernels (e.g. upsample backward) have no
        # deterministic version, so warn instead of failing; results may vary in the last bits.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device


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


def batches(
    split: Split, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches; shuffled when a ``generator`` is given."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield split.images[index], split.labels[index]


def optimize_epoch(
    optimizer: torch.optim.Optimizer,
    split: Split,
    batch_size: int,
    generator: torch.Generator,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    desc: str,
) -> tuple[float, float]:
    """One optimizer pass over ``split`` in a seeded random order, with a progress bar.

    ``loss_fn(images, labels)`` gets each CPU batch and returns its mean loss, or ``None``
    to skip the batch. Returns the mean loss per image and the images per second. The
    caller sets train/eval modes.
    """
    loss_sum, seen, start = 0.0, 0, time.perf_counter()
    n_batches = (len(split) + batch_size - 1) // batch_size
    bar = tqdm(batches(split, batch_size, generator), total=n_batches, desc=desc, leave=False)
    for images, labels in bar:
        loss = loss_fn(images, labels)
        if loss is None:
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(images)
        seen += len(images)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    return loss_sum / max(seen, 1), seen / max(time.perf_counter() - start, 1e-9)


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images_per_s: float


def train_one_epoch(
    model: nn.Module,
    normalize: Normalize,
    split: Split,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    freeze_encoder: bool = False,
    desc: str = "train",
) -> EpochStats:
    """One pass over ``split`` in a seeded random order. With ``freeze_encoder`` the encoder
    stays in eval mode, so its BatchNorm statistics do not move either."""
    model.train()
    if freeze_encoder:
        model.encoder.eval()
    correct = 0

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nonlocal correct
        images, labels = images.to(device), labels.to(device)
        logits = model(normalize(images))
        correct += (logits.argmax(1) == labels).sum().item()
        return nn.functional.cross_entropy(logits, labels)

    loss, rate = optimize_epoch(optimizer, split, batch_size, generator, loss_fn, desc)
    return EpochStats(loss, correct / max(len(split), 1), rate)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    macro_f1: float
    predictions: torch.Tensor  # int64 (N,)


@torch.no_grad()
def evaluate(
    model: nn.Module, normalize: Normalize, split: Split, device: torch.device
) -> Evaluation:
    """Loss, accuracy, macro-F1 and predictions of ``model`` on ``split``, in eval mode."""
    model.eval()
    loss_sum, predictions = 0.0, []
    for images, labels in batches(split, EVAL_BATCH_SIZE):
        logits = model(normalize(images.to(device)))
        loss_sum += nn.functional.cross_entropy(logits, labels.to(device), reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
    predicted = torch.cat(predictions)
    targets = split.labels
    return Evaluation(
        loss=loss_sum / len(split),
        accuracy=(predicted == targets).float().mean().item(),
        macro_f1=float(f1_score(targets.numpy(), predicted.numpy(), average="macro")),
        predictions=predicted,
    )


def fit(
    model: nn.Module,
    normalize: Normalize,
    train: Split,
    val: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    freeze_encoder: bool = False,
    log: Callable[[str], None] = tqdm.write,
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    """Train with Adam, validating each epoch. Returns the per-epoch history and the
    weights of the epoch with the best val accuracy (earliest on ties)."""
    if freeze_encoder:
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best_accuracy, best_state = -1.0, copy.deepcopy(model.state_dict())
    for epoch in range(1, epochs + 1):
        stats = train_one_epoch(
            model, normalize, train, optimizer, batch_size, generator, device,
            freeze_encoder=freeze_encoder, desc=f"epoch {epoch}/{epochs}",
        )  # fmt: skip
        result = evaluate(model, normalize, val, device)
        history.append({
            "epoch": epoch,
            "train_loss": round(stats.loss, 6),
            "train_accuracy": round(stats.accuracy, 6),
            "val_loss": round(result.loss, 6),
            "val_accuracy": round(result.accuracy, 6),
        })  # fmt: skip
        if result.accuracy > best_accuracy:
            best_accuracy, best_state = result.accuracy, copy.deepcopy(model.state_dict())
        log(
            f"epoch {epoch:>3}/{epochs}  train_loss {stats.loss:.4f}  train_acc {stats.accuracy:.4f}"
            f"  val_loss {result.loss:.4f}  val_acc {result.accuracy:.4f}"
            f"  {stats.images_per_s:,.0f} img/s"
        )
    return history, best_state
