"""Seeding, devices, the training budget, and the small supervised loop: ``fit`` and ``evaluate``.

Every trainer here runs a budget of optimizer steps rather than a fixed number of
epochs: ``max(epochs passes over the data, min_steps)`` (see :func:`step_budget`). A
fixed epoch count gives a 70-image label subset 20 Adam steps where the full train
split gets 1,100, so a low-label comparison would mostly measure under-training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from initbench import distributed
from initbench.data import Split
from initbench.errors import InitbenchError

EVAL_BATCH_SIZE = 512
#: On CUDA a training split moves to GPU memory when it takes at most this share of the
#: free memory; otherwise its batches are copied over from pinned (page-locked) memory.
DEVICE_DATA_SHARE = 0.5
#: At most this many rounds (progress lines, val evaluations, history rows) per run: one
#: per epoch when there are at most this many epochs, else evenly spaced steps.
MAX_ROUNDS = 10


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True)`` without its import of TorchInductor's
    config (2-3 s a process, for ``torch.compile``, which initbench never uses)."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another torch than the pinned one: the public, slower call
        torch.use_deterministic_algorithms(True)
    else:
        setter(True, warn_only=False)


def resolve_device(name: str, threads: int = 0) -> torch.device:
    """``auto`` -> CUDA when present, else CPU. Deterministic kernels are on for CPU, and
    ``threads`` > 0 sets how many CPU threads torch uses (0 keeps its default).

    Raises:
        InitbenchError: ``cuda`` was asked for and none is available.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InitbenchError("device: cuda was asked for, but no CUDA device is available")
    device = torch.device(name)
    if device.type == "cpu":
        _deterministic_algorithms()
        # Deterministic mode also fills every new tensor with NaN, to expose reads of
        # uninitialized memory; on CPU that costs about 6% of a training step and no
        # kernel we run reads such memory (the weights come out bit-identical without it).
        torch.utils.deterministic.fill_uninitialized_memory = False
    else:
        # As deterministic as CUDA allows: some kernels (e.g. upsample backward) have no
        # deterministic version, so warn instead of failing; results may vary in the last bits.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device


def live_history(path: str | os.PathLike[str]) -> Callable[[list[dict[str, float]]], None]:
    """An ``on_history`` callback for the trainers: rewrites ``path`` (JSON) atomically with
    the history so far after each round, on each machine's first process only, so
    ``dvc plots show`` and the VS Code extension show the curve growing during training.
    The stage writes the final history there again at its end."""
    from initbench.files import write_json

    def write(history: list[dict[str, float]]) -> None:
        if distributed.is_local_main():
            write_json(path, history)

    return write


#: Environment variables that change which kernels run, and so the last bits of results.
RUN_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
           "MKL_CBWR", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "CUBLAS_WORKSPACE_CONFIG")  # fmt: skip


def run_info(device: torch.device) -> list[dict[str, object]]:
    """What a training run's bits depend on beyond its inputs: versions, the CPU kernels
    ATen dispatched to, threads, processes and the variables in :data:`RUN_ENV` that are set.

    Stages write it into their metrics or report files as a one-element list, which
    ``dvc metrics show`` and ``dvc metrics diff`` leave out of their tables, so a result
    that differs between two machines can be explained (``git diff metrics/`` for the
    detailed run).
    """
    info = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "processes": distributed.world_size(),
        "precision": mixed_precision(device).name,
    }
    env = {name: os.environ[name] for name in RUN_ENV if name in os.environ}
    return [info | ({"env": env} if env else {})]


@dataclass(frozen=True)
class MixedPrecision:
    """How the training steps of :func:`optimize` compute: ``dtype`` is the autocast type of
    the forward pass and loss (``None``: float32 throughout), and ``scaler`` the gradient
    scaler that float16 needs (bfloat16 has float32's exponent range and needs none).

    Micikevicius et al. 2018, "Mixed Precision Training"; PyTorch's ``torch.autocast`` and
    ``torch.amp.GradScaler``. Weights and optimizer state stay float32.
    """

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @property
    def name(self) -> str:
        """``float32``, ``bfloat16 autocast`` or ``float16 autocast + grad scaler``."""
        if self.dtype is None:
            return "float32"
        return f"{str(self.dtype).removeprefix('torch.')} autocast" + (
            " + grad scaler" if self.scaler is not None else ""
        )

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context for one forward pass and loss on ``device``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass and optimizer step, through the scaler when there is one (a step
        whose scaled gradients overflowed is skipped and the scale lowered)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def mixed_precision(device: torch.device) -> MixedPrecision:
    """The training precision for ``device``: float32 on CPU (deterministic, and CPUs
    without native bfloat16 run it slower than float32); on CUDA bfloat16 autocast where
    the GPU has bfloat16 units (compute capability 8.0 and later: Ampere, Hopper, ...),
    else float16 autocast with a gradient scaler (``torch.cuda.is_bf16_supported`` is
    true on older GPUs too, where bfloat16 is emulated and slow)."""
    if device.type != "cuda":
        return MixedPrecision()
    if torch.cuda.get_device_capability(device)[0] >= 8:
        return MixedPrecision(torch.bfloat16)
    return MixedPrecision(torch.float16, torch.amp.GradScaler("cuda"))


def fits_on_device(nbytes: int, free_bytes: int, share: float = DEVICE_DATA_SHARE) -> bool:
    """Whether data of ``nbytes`` bytes may stay in device memory with ``free_bytes`` free:
    it may take at most ``share`` of it, leaving the rest to the model and activations."""
    return nbytes <= share * free_bytes


def keep_on_device(split: Split, device: torch.device) -> Split:
    """``split`` with its images and labels in CUDA memory when they fit
    (:func:`fits_on_device`), so training batches are gathered on the GPU with no copy
    from the host; on CPU, or when they do not fit, ``split`` itself."""
    if device.type != "cuda" or split.images.device.type == "cuda":
        return split
    free, _ = torch.cuda.mem_get_info(device)
    # Memory PyTorch's caching allocator holds but does not use is free to us, not to CUDA.
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if not fits_on_device(split.images.nbytes + split.labels.nbytes, free):
        return split
    return dataclasses.replace(
        split, images=split.images.to(device), labels=split.labels.to(device)
    )


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a CPU tensor bound for CUDA is copied into pinned
    (page-locked) memory first, from which the transfer to the GPU is a direct, asynchronous
    DMA copy."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


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
) -> None:
    """Run ``steps`` optimizer steps over seeded reshuffled passes of ``split``.

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

    In a process group (:mod:`initbench.distributed`) ``batch_size`` is the global batch:
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
                loss_sum += distributed.mean_over_ranks(loss) * images_in_step
                seen += images_in_step
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
                if step in ends:
                    elapsed = max(time.perf_counter() - start, 1e-9)
                    on_round(Round(ends.index(step) + 1, len(ends), step, step / per_epoch,
                                   loss_sum / seen, seen / elapsed))  # fmt: skip
                    loss_sum, seen, start = 0.0, 0, time.perf_counter()
                if step == steps:
                    break


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
    log: Callable[[str], None] = tqdm.write,
    on_history: Callable[[list[dict[str, float]]], None] | None = None,
) -> list[dict[str, float]]:
    """Train with Adam for :func:`step_budget` steps; the model keeps its final weights.

    ``on_history`` (if given) gets the history so far after each round, so a stage can
    write it as training goes (live curves).

    There is no best-epoch selection: picking the epoch on 1,000 labelled val images would
    use more labels than a low-label run trains on. ``val`` is only watched, once a round,
    so the history shows whether training reached a plateau.

    With ``freeze_encoder`` only the head trains and the encoder stays in eval mode; call
    :func:`initbench.probes.recalibrate_batchnorm` first so its BatchNorm statistics fit
    the data.

    In a process group the model trains as ``DistributedDataParallel`` on shards of each
    global batch (:func:`optimize`), and every process evaluates ``val`` alike.

    Returns:
        One row a round: ``step``, ``epoch``, ``train_loss``, ``train_accuracy``,
        ``val_loss``, ``val_accuracy``.
    """
    if freeze_encoder:
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps = step_budget(len(train), batch_size, epochs, min_steps)
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
    optimize(optimizer, train, batch_size=batch_size, steps=steps, generator=generator,
             loss_fn=loss_fn, on_round=on_round, desc="train", device=device)  # fmt: skip
    return history
