"""Setting up a training process: seeding, the device and its determinism, and the run's
provenance (what its bits depend on beyond its inputs)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from initbench.core.errors import InitbenchError
from initbench.training import distributed
from initbench.training.precision import mixed_precision


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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu`` and ``cuda`` as named. Changes no
    state (:func:`configure_torch` does).

    Raises:
        InitbenchError: ``cuda`` was asked for and none is available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InitbenchError("device: cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def configure_torch(device: torch.device, threads: int = 0) -> None:
    """Set this process's torch state for training on ``device``: ``threads`` > 0 CPU
    threads (0 keeps torch's default), and deterministic algorithms (on CPU strictly; on
    CUDA as far as it allows, warning where a kernel has no deterministic version). Every
    training stage calls it once, before any work."""
    if threads > 0:
        torch.set_num_threads(threads)
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
