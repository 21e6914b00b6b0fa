"""The generic training loop (:func:`optimize`) and its step budget.

Every trainer here runs a budget of optimizer steps rather than a fixed number of
epochs: ``max(epochs passes over the data, min_steps)`` (see :func:`step_budget`). A
fixed epoch count gives a 70-image label subset 20 Adam steps where the full train
split gets 1,100, so a low-label comparison would mostly measure under-training.

The loop knows nothing of what it trains: a loss function of a batch is all it is given.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm import tqdm

from initbench.data.dataset import Split
from initbench.training import distributed
from initbench.training.placement import keep_on_device, to_device
from initbench.training.precision import MixedPrecision, mixed_precision

EVAL_BATCH_SIZE = 512

#: At most this many rounds (progress lines, val evaluations, history rows) per run: one
#: per epoch when there are at most this many epochs, else evenly spaced steps.
MAX_ROUNDS = 10


def live_history(path: str | os.PathLike[str]) -> Callable[[list[dict[str, float]]], None]:
    """An ``on_history`` callback for the trainers: rewrites ``path`` (JSON) atomically with
    the history so far after each round, on each machine's first process only, so
    ``dvc plots show`` and the VS Code extension show the curve growing during training.
    The stage writes the final history there again at its end."""
    from initbench.core.files import write_json

    def write(history: list[dict[str, float]]) -> None:
        if distributed.is_local_main():
            write_json(path, history)

    return write


def batches(
    split: Split, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches; shuffled when a ``generator`` is given."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield split.images[index], split.labels[index]


def train_batches(
    split: Split,
    batch_size: int,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One seeded shuffled pass of training batches: process ``rank``'s share of each global
    batch of ``batch_size`` images.

    The pass draws one permutation from ``generator`` (the same on every process) and cuts
    it into global batches, as :func:`batches`. A last batch of a single image is skipped
    when ``split`` has more (BatchNorm in train mode cannot normalize one value per
    channel). With ``world_size > 1`` a global batch is padded to a multiple of
    ``world_size`` with the pass's first images and process ``rank`` takes every
    ``world_size``-th image from position ``rank``: the shards of
    ``torch.utils.data.DistributedSampler`` (``drop_last=False``, its ``set_epoch`` being
    the generator's next draw), so the processes together see exactly the single-process
    batches when ``world_size`` divides ``batch_size``. Images ``uint8 (b, C, H, W)``,
    labels ``int64 (b,)``, ``b = ceil(global / world_size)``.

    Raises:
        ValueError: ``rank`` is not in ``[0, world_size)``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    n = len(split)
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if len(index) < 2 <= n:
            continue
        if world_size > 1:
            pad = -len(index) % world_size
            index = torch.cat([index, order.repeat(-(-pad // n))[:pad]])[rank::world_size]
        index = index.to(split.images.device)  # a split kept in GPU memory is indexed there
        yield split.images[index], split.labels[index]


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``n_images`` in batches of ``min(batch_size,
    n_images)``: a last batch of a single image is skipped (see :func:`optimize`).

    Raises:
        ValueError: ``n_images`` or ``batch_size`` is below 1.
    """
    if n_images < 1 or batch_size < 1:
        raise ValueError(
            f"need at least one image and batch_size >= 1, got {n_images} and {batch_size}"
        )
    batch_size = min(batch_size, n_images)
    full, rest = divmod(n_images, batch_size)
    return full + (1 if rest >= 2 else 0)


def step_budget(n_images: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_images``, and at least ``min_steps``.

    A batch is ``min(batch_size, n_images)`` images, so a small set is one batch a step.

    Raises:
        ValueError: ``n_images`` or ``batch_size`` is below 1.
    """
    return max(epochs * steps_per_epoch(n_images, batch_size), min_steps)


def round_ends(steps: int, per_epoch: int, max_rounds: int = MAX_ROUNDS) -> list[int]:
    """The step counts at which a round ends: each epoch's end when there are at most
    ``max_rounds`` epochs (the last one possibly cut short), else ``max_rounds`` evenly
    spaced steps. The last entry is always ``steps``."""
    epochs = math.ceil(steps / per_epoch)
    if epochs <= max_rounds:
        return [min(e * per_epoch, steps) for e in range(1, epochs + 1)]
    return sorted({max(1, round(steps * r / max_rounds)) for r in range(1, max_rounds + 1)})


@dataclass
class Round:
    """What :func:`optimize` reports at the end of each round."""

    index: int  # 1-based
    rounds: int
    step: int  # optimizer steps done so far
    epoch: float  # passes over the data done so far (step / steps per epoch)
    loss: float  # mean loss per image over the round
    images_per_s: float


def optimize(
    optimizer: torch.optim.Optimizer,
    split: Split,
    *,
    batch_size: int,
    steps: int,
    generator: torch.Generator,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    on_round: Callable[[Round], None],
    desc: str,
    device: torch.device | None = None,
    precision: MixedPrecision | None = None,
    max_rounds: int = MAX_ROUNDS,
    stop: Callable[[list[float]], bool] | None = None,
) -> list[float]:
    """Run ``steps`` optimizer steps over seeded reshuffled passes of ``split``; return
    each step's loss (of the global batch), for :func:`initbench.training.plateau.plateau_check`.

    ``stop`` (if given) is asked after every step but the budget's last with the losses so
    far (the list this returns, which keeps growing); when it answers true, training ends
    there, with a last (shorter) round. The steps it ran are exactly
    the first steps of the full budget: the data order, augmentation and dropout draws do
    not depend on ``steps``.

    ``loss_fn(images, labels)`` gets each batch of ``min(batch_size, len(split))`` images,
    already on ``device`` (default CPU), and returns its mean loss. It runs inside
    ``precision``'s autocast (default :func:`mixed_precision` of ``device``: float32 on CPU).
    On CUDA the split stays in GPU memory when it fits (:func:`keep_on_device`), else each
    batch is copied from pinned memory (:func:`to_device`); the order of the batches is the
    same either way. A pass whose last batch would hold a single image skips it (BatchNorm
    in train mode cannot normalize one value per channel; the next pass is shuffled anew,
    so no image is left out for good). ``on_round`` is called at each of
    :func:`round_ends`. The caller sets train/eval modes (and may change them in
    ``on_round``; they are not restored).

    In a process group (:mod:`initbench.training.distributed`) ``batch_size`` is the global batch:
    ``loss_fn`` gets this process's share of it (:func:`train_batches`), and the loss and
    images/s that ``on_round`` reports are those of the global batches. The step budget is
    the same as in a single process. Only each machine's first process shows a progress bar.
    """
    device = torch.device("cpu") if device is None else device
    precision = mixed_precision(device) if precision is None else precision
    split = keep_on_device(split, device)
    per_epoch = steps_per_epoch(len(split), batch_size)
    batch_size = min(batch_size, len(split))
    ends = round_ends(steps, per_epoch, max_rounds)
    rank, world = distributed.rank(), distributed.world_size()
    step, loss_sum, seen, start = 0, 0.0, 0, time.perf_counter()
    losses: list[float] = []
    stopped = False
    # A bar on a terminal only (disable=None): in a log file or CI its refreshes would be
    # most of the lines; the per-round lines of ``on_round`` say the same there.
    quiet = None if distributed.is_local_main() else True
    with tqdm(total=steps, desc=desc, leave=False, unit="step", disable=quiet) as bar:
        while step < steps:
            for images, labels in train_batches(split, batch_size, generator, rank, world):
                images, labels = to_device(images, device), to_device(labels, device)
                with precision.autocast(device):
                    loss = loss_fn(images, labels)
                optimizer.zero_grad(set_to_none=True)
                precision.step(loss, optimizer)
                step += 1
                images_in_step = len(images) * world  # the global batch, padding included
                losses.append(distributed.mean_over_ranks(loss))
                loss_sum += losses[-1] * images_in_step
                seen += images_in_step
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
                stopped = stop is not None and step < steps and stop(losses)
                if stopped:
                    ends = [e for e in ends if e < step] + [step]
                    bar.total = step
                if step in ends:
                    elapsed = max(time.perf_counter() - start, 1e-9)
                    on_round(Round(ends.index(step) + 1, len(ends), step, step / per_epoch,
                                   loss_sum / seen, seen / elapsed))  # fmt: skip
                    loss_sum, seen, start = 0.0, 0, time.perf_counter()
                if step == steps or stopped:
                    break
            if stopped:
                break
    return losses
