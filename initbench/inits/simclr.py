"""SimCLR contrastive pretraining of the encoder (Chen et al. 2020).

Two augmented views of each image go through the encoder and a projection
head; NT-Xent pulls the two views together and pushes the other 2N-2 apart.
The representation transferred to the classifier is the encoder's output,
*before* the projection head.
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
from initbench.inits.augment import AugmentConfig, simclr_view
from initbench.inits.losses import gathered_nt_xent
from initbench.models.cnn import Encoder, feature_side, seeded_encoder
from initbench.training import distributed
from initbench.training.loop import Round, optimize, step_budget
from initbench.training.plateau import Plateau, grown_budget, plateau_check
from initbench.training.probes import encode, knn_accuracy, recalibrate_batchnorm

#: The kNN probe runs before training and at most this many times during it: halfway and
#: at the end. Each costs three encoder passes over the train images (about 3 s on the
#: embedded data on 2 CPU cores), so more would be a sizeable share of the stage.
KNN_PROBES = 2
#: Hidden units of the projection head (SimCLR's 2-layer MLP).
PROJECTION_HIDDEN = 512


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


def build_simclr(
    in_channels: int, image_size: int, channels: Sequence[int], projection_dim: int, seed: int
) -> SimCLR:
    """SimCLR's model: the seeded encoder every strategy starts from
    (:func:`~initbench.models.cnn.seeded_encoder`) with dropout off, and a projection head of
    :data:`PROJECTION_HIDDEN` units drawn after it from the global RNG.

    Dropout is off while pretraining: different masks on the two views act as one more
    strong augmentation and slowed learning (kNN val 0.852 with, 0.895 without, on the
    embedded dataset). Dropout has no weights, so the transferred encoder is unaffected.

    Raises:
        ValueError: ``image_size`` is too small for ``len(channels)`` 2x2 pools.
    """
    side = feature_side(image_size, len(channels))
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for {len(channels)} 2x2 pools")
    encoder = seeded_encoder(in_channels, channels, [0.0] * len(channels), seed)
    head = ProjectionHead(encoder.out_channels * side**2, PROJECTION_HIDDEN, projection_dim)
    return SimCLR(encoder, head)


class _TwoViews(nn.Module):
    """``(view1, view2) -> (model(view1), model(view2))``: both views in one call, so a
    DistributedDataParallel step has one forward per backward. Each view is its own batch
    through the model (its own BatchNorm statistics), as two separate calls would be."""

    def __init__(self, model: SimCLR) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(view1), self.model(view2)


def probe_knn(
    encoder: Encoder, normalize: Normalize, train: Split, val: Split, device: torch.device
) -> float:
    """kNN probe of the frozen encoder after precise BatchNorm on the train images
    (:mod:`initbench.training.probes`): fit on train features and labels, scored on val."""
    recalibrate_batchnorm(encoder, normalize, train.images, device)
    return knn_accuracy(
        encode(encoder, normalize, train.images, device), train.labels.numpy(),
        encode(encoder, normalize, val.images, device), val.labels.numpy(),
    )  # fmt: skip


@dataclass
class SimclrResult:
    history: list[dict[str, float]]
    loss: float
    knn_accuracy: float
    random_init_knn_accuracy: float
    pairs_per_s: float
    steps: int  # optimizer steps
    images_seen: int  # training images over all steps (each image once a pair for SimCLR)
    plateau: Plateau  # the per-step training loss over the last third of the budget


def knn_monitor(result: SimclrResult) -> list[dict[str, float]]:
    """The kNN val accuracy of the frozen encoder at each step it was probed, the initial
    encoder's at step 0 first: ``[{"step": 0, "accuracy": ...}, ...]``. A monitor of the
    budget only: no checkpoint is chosen by it."""
    return [{"step": 0, "accuracy": result.random_init_knn_accuracy}] + [
        {"step": row["step"], "accuracy": row["knn_accuracy"]}
        for row in result.history
        if row["knn_accuracy"] is not None
    ]


def train_simclr(
    model: SimCLR,
    normalize: Normalize,
    train: Split,
    val: Split,
    *,
    epochs: int,
    min_steps: int,
    lr: float,
    batch_size: int,
    temperature: float,
    seed: int,
    device: torch.device,
    augment: AugmentConfig | None = None,
    log: Callable[[str], None] = tqdm.write,
    on_history: Callable[[list[dict[str, float]]], None] | None = None,
    max_steps: int | None = None,
) -> SimclrResult:
    """Adam on NT-Xent over two seeded random views per image, for
    :func:`initbench.training.loop.step_budget` steps. Train labels are used only by the kNN probe
    that monitors the frozen encoder before training and at up to :data:`KNN_PROBES`
    rounds (always the last). With ``max_steps`` above that floor the budget grows until
    NT-Xent is at a plateau (:func:`initbench.training.plateau.plateau_stop`), at most
    ``max_steps``; the kNN probes, which change no weight, stay a monitor.

    In a process group (:mod:`initbench.training.distributed`) the model trains as
    ``DistributedDataParallel`` on shards of each global batch of ``batch_size`` images, with
    SyncBatchNorm on CUDA (:func:`initbench.training.distributed.sync_batchnorm`; the model's own
    BatchNorm modules are back afterwards), views drawn from a per-process seed
    (:func:`initbench.training.distributed.rank_seed`) and NT-Xent over the gathered global batch
    (:func:`initbench.inits.losses.gathered_nt_xent`). Every process runs the kNN probes alike.
    ``on_history`` (if given) gets the history so far after each round, so a stage can
    write it as training goes."""
    augment = augment or AugmentConfig()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order_generator = torch.Generator().manual_seed(seed)
    view_generator = torch.Generator().manual_seed(distributed.rank_seed(seed + 1))
    steps, stop = grown_budget(step_budget(len(train), batch_size, epochs, min_steps), max_steps)
    random_knn = probe_knn(model.encoder, normalize, train, val, device)
    log(f"step     0/{steps}  knn_val_acc {random_knn:.4f} (initial encoder)")
    history: list[dict[str, float]] = []
    rates = []

    def loss_fn(images: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        images = images.to(device).float() / 255.0
        with torch.autocast(device.type, enabled=False):  # views in float32 at any precision
            view1 = simclr_view(images, view_generator, augment)
            view2 = simclr_view(images, view_generator, augment)
        z1, z2 = net(normalize.standardize(view1), normalize.standardize(view2))
        return gathered_nt_xent(z1, z2, temperature)

    def on_round(r: Round) -> None:
        distributed.broadcast_buffers(model)
        rates.append(r.images_per_s)
        # Every row has every key (None where the kNN probe did not run): DVC plots only
        # rows of one shape, and drops the whole file otherwise.
        row = {"step": r.step, "epoch": round(r.epoch, 4), "loss": round(r.loss, 6),
               "knn_accuracy": None}  # fmt: skip
        probe_every = -(-r.rounds // KNN_PROBES)  # ceil
        if r.index % probe_every == 0 or r.index == r.rounds:
            row["knn_accuracy"] = probe_knn(model.encoder, normalize, train, val, device)
            model.train()
        history.append(row)
        if on_history is not None:
            on_history(history)
        knn = "" if row["knn_accuracy"] is None else f"  knn_val_acc {row['knn_accuracy']:.4f}"
        log(f"round {r.index:>2}/{r.rounds}  step {r.step:>5}/{steps}  nt_xent {r.loss:.4f}"
            f"{knn}  {r.images_per_s:,.0f} pairs/s")  # fmt: skip

    with distributed.sync_batchnorm(model, device) as synced:
        if distributed.world_size() > 1 and not synced:
            log("BatchNorm statistics are per process: PyTorch's SyncBatchNorm needs CUDA")
        net = distributed.data_parallel(_TwoViews(model), device, seed)  # plain in 1 process
        model.train()
        losses = optimize(optimizer, train, batch_size=batch_size, steps=steps, generator=order_generator,
                 loss_fn=loss_fn, on_round=on_round, desc="simclr", device=device, stop=stop)  # fmt: skip
    return SimclrResult(
        history=history,
        loss=history[-1]["loss"],
        knn_accuracy=history[-1]["knn_accuracy"],
        random_init_knn_accuracy=random_knn,
        pairs_per_s=float(np.mean(rates)),
        steps=len(losses),
        images_seen=len(losses) * min(batch_size, len(train)),
        plateau=plateau_check(losses),
    )
