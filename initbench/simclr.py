"""SimCLR contrastive pretraining of the encoder (Chen et al. 2020).

Two augmented views of each image go through the encoder and a projection
head; NT-Xent pulls the two views together and pushes the other 2N-2 apart.
The representation transferred to the classifier is the encoder's output,
*before* the projection head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import nn
from tqdm import tqdm

from initbench.augment import AugmentConfig, simclr_view
from initbench.data import Split
from initbench.losses import nt_xent
from initbench.model import Encoder
from initbench.train import EVAL_BATCH_SIZE, Normalize, batches, optimize_epoch

KNN_NEIGHBORS = 20


class ProjectionHead(nn.Module):
    """2-layer MLP ``(B, C, h, w) -> (B, projection_dim)``: flatten, Linear, ReLU, Linear."""

    def __init__(self, in_features: int, hidden: int, projection_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, projection_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class SimCLR(nn.Module):
    def __init__(self, encoder: Encoder, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, projection_dim)
        return self.head(self.encoder(x))


@torch.no_grad()
def encode(
    encoder: Encoder, normalize: Normalize, split: Split, device: torch.device
) -> np.ndarray:
    """Flattened encoder features ``(N, D)`` of ``split``, in eval mode."""
    encoder.eval()
    features = [
        encoder(normalize(images.to(device))).flatten(1).cpu()
        for images, _ in batches(split, EVAL_BATCH_SIZE)
    ]
    return torch.cat(features).numpy()


def knn_accuracy(
    encoder: Encoder, normalize: Normalize, train: Split, val: Split, device: torch.device
) -> float:
    """kNN probe of a frozen encoder: cosine distance, k=20 (at most the train size),
    fit on train features and labels, scored on val."""
    train_features = encode(encoder, normalize, train, device)
    val_features = encode(encoder, normalize, val, device)
    k = min(KNN_NEIGHBORS, len(train))
    probe = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    probe.fit(train_features, train.labels.numpy())
    return float(probe.score(val_features, val.labels.numpy()))


@dataclass
class SimclrResult:
    history: list[dict[str, float]]
    loss: float
    knn_accuracy: float
    random_init_knn_accuracy: float
    pairs_per_s: float


def train_simclr(
    model: SimCLR,
    normalize: Normalize,
    train: Split,
    val: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    temperature: float,
    seed: int,
    device: torch.device,
    augment: AugmentConfig | None = None,
    log: Callable[[str], None] = tqdm.write,
) -> SimclrResult:
    """Adam on NT-Xent over two seeded random views per image. Train labels are used only by
    the kNN probe that monitors the frozen encoder after each epoch and before the first."""
    augment = augment or AugmentConfig()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order_generator = torch.Generator().manual_seed(seed)
    view_generator = torch.Generator().manual_seed(seed + 1)
    random_knn = knn_accuracy(model.encoder, normalize, train, val, device)
    log(f"epoch   0/{epochs}  knn_val_acc {random_knn:.4f} (initial encoder)")
    history: list[dict[str, float]] = []
    rates = []

    def loss_fn(images: torch.Tensor, _: torch.Tensor) -> torch.Tensor | None:
        if len(images) < 2:  # a last batch of one image has no negatives
            return None
        images = images.to(device).float() / 255.0
        view1 = simclr_view(images, view_generator, augment)
        view2 = simclr_view(images, view_generator, augment)
        z1 = model(normalize.standardize(view1))
        z2 = model(normalize.standardize(view2))
        return nt_xent(z1, z2, temperature)

    for epoch in range(1, epochs + 1):
        model.train()
        loss, rate = optimize_epoch(
            optimizer, train, batch_size, order_generator, loss_fn, f"simclr {epoch}/{epochs}"
        )
        rates.append(rate)
        knn = knn_accuracy(model.encoder, normalize, train, val, device)
        history.append({"epoch": epoch, "loss": round(loss, 6), "knn_accuracy": knn})
        log(f"epoch {epoch:>3}/{epochs}  nt_xent {loss:.4f}  knn_val_acc {knn:.4f}"
            f"  {rate:,.0f} pairs/s")  # fmt: skip
    return SimclrResult(
        history=history,
        loss=history[-1]["loss"] if history else float("nan"),
        knn_accuracy=history[-1]["knn_accuracy"] if history else random_knn,
        random_init_knn_accuracy=random_knn,
        pairs_per_s=float(np.mean(rates)) if rates else 0.0,
    )
