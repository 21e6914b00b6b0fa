"""Supervised training and evaluation of a classifier: :func:`fit` and :func:`evaluate`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from initbench.data.dataset import Split
from initbench.data.transforms import Normalize, crop_flip, crop_padding
from initbench.training import distributed
from initbench.training.loop import EVAL_BATCH_SIZE, Round, batches, optimize, step_budget
from initbench.training.plateau import Plateau, plateau_check

#: Offset of the augmentation stream's seed from the run's: its own generator, so turning
#: augmentation on or off leaves the data order and dropout masks as they were.
AUGMENT_STREAM = 7919


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
    from sklearn.metrics import f1_score  # about 1 s to import; stages that never evaluate skip it

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


@dataclass
class FitResult:
    """What :func:`fit` ran: its history and the optimizer steps it took."""

    history: list[dict[str, float]]  # one row a round, see :func:`fit`
    steps: int  # the steps it ran: the budget, or fewer when ``stop`` ended it
    plateau: Plateau  # the train loss over the last third of the budget


def fit(
    model: nn.Module,
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
    freeze_encoder: bool = False,
    augment: bool = False,
    log: Callable[[str], None] = tqdm.write,
    on_history: Callable[[list[dict[str, float]]], None] | None = None,
    steps: int | None = None,
    stop: Callable[[list[float]], bool] | None = None,
) -> FitResult:
    """Train with Adam for :func:`step_budget` steps (or ``steps``, when given); the model
    keeps its final weights. ``stop`` may end training sooner (:func:`optimize`); the
    result then holds the steps it ran.

    ``on_history`` (if given) gets the history so far after each round, so a stage can
    write it as training goes (live curves).

    There is no best-epoch selection: picking the epoch on 1,000 labelled val images would
    use more labels than a low-label run trains on. ``val`` is only watched, once a round,
    so the history shows whether training reached a plateau.

    With ``augment`` every training batch is cropped and flipped
    (:func:`initbench.data.transforms.crop_flip`) from a generator of its own, seeded from
    ``seed``: runs of one seed see the same views whatever their init. In a process group
    each process draws from its own seed (:func:`initbench.training.distributed.rank_seed`).

    With ``freeze_encoder`` only the head trains and the encoder stays in eval mode; call
    :func:`initbench.training.probes.recalibrate_batchnorm` first so its BatchNorm statistics fit
    the data.

    In a process group the model trains as ``DistributedDataParallel`` on shards of each
    global batch (:func:`optimize`), and every process evaluates ``val`` alike.

    Returns:
        The steps taken, the plateau check of the per-step train loss
        (:func:`initbench.training.plateau.plateau_check`) and the history, one row a round: ``step``, ``epoch``, ``train_loss``, ``train_accuracy``,
        ``val_loss``, ``val_accuracy``.
    """
    if freeze_encoder:
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    views = torch.Generator().manual_seed(distributed.rank_seed(seed + AUGMENT_STREAM))
    padding = crop_padding(train.images.shape[-1])
    steps = step_budget(len(train), batch_size, epochs, min_steps) if steps is None else steps
    history: list[dict[str, float]] = []
    correct, counted = 0, 0
    net = distributed.data_parallel(model, device, seed)  # ``model`` in a single process

    def train_mode() -> None:
        model.train()
        if freeze_encoder:
            model.encoder.eval()

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nonlocal correct, counted
        images, labels = images.to(device), labels.to(device)
        if augment:
            images = crop_flip(images, views, padding)
        logits = net(normalize(images))
        correct += (logits.argmax(1) == labels).sum().item()
        counted += len(labels)
        return nn.functional.cross_entropy(logits, labels)

    def on_round(r: Round) -> None:
        nonlocal correct, counted
        distributed.broadcast_buffers(model)
        result = evaluate(model, normalize, val, device)
        right, total = distributed.sum_over_ranks([correct, counted])
        train_accuracy = right / max(total, 1)
        history.append({
            "step": r.step,
            "epoch": round(r.epoch, 4),
            "train_loss": round(r.loss, 6),
            "train_accuracy": round(train_accuracy, 6),
            "val_loss": round(result.loss, 6),
            "val_accuracy": round(result.accuracy, 6),
        })  # fmt: skip
        if on_history is not None:
            on_history(history)
        log(
            f"round {r.index:>2}/{r.rounds}  step {r.step:>5}/{steps}  train_loss {r.loss:.4f}"
            f"  train_acc {train_accuracy:.4f}  val_loss {result.loss:.4f}"
            f"  val_acc {result.accuracy:.4f}  {r.images_per_s:,.0f} img/s"
        )
        correct, counted = 0, 0
        train_mode()

    train_mode()
    losses = optimize(optimizer, train, batch_size=batch_size, steps=steps, generator=generator,
                      loss_fn=loss_fn, on_round=on_round, desc="train", device=device,
                      stop=stop)  # fmt: skip
    return FitResult(history, len(losses), plateau_check(losses))
