"""Several processes, one model: the ``torchrun`` launch and PyTorch DDP.

A training stage with ``nproc_per_node: 1`` (the default) runs in its own process; here
it only meets cheap checks that find no process group, and its results are unchanged.
With ``nproc_per_node: N > 1`` (or torchrun's ``PET_NNODES`` set, for several machines)
the stage re-executes itself under ``python -m torch.distributed.run`` (torchrun), which
starts ``N`` copies of it per machine.
Each copy joins the process group from torchrun's environment (NCCL on CUDA, gloo on CPU)
and trains its share of every global batch in a ``DistributedDataParallel`` model.

What is global and what is per process (see :func:`initbench.training.loop.train_batches`):

- ``batch_size`` is the global batch, split evenly across the processes; the step budget
  and the order of images are those of a single-process run of the same seed;
- DDP averages gradients across processes (PyTorch docs, "DistributedDataParallel"), so
  a step follows the gradient of the global batch's mean loss;
- evaluation runs on every process, on the whole split, with the same weights and
  BatchNorm statistics, so every process computes the same numbers;
- each machine's first process (``LOCAL_RANK`` 0) prints and writes the stage outputs, so
  every machine's ``dvc repro`` finds them; the other processes are silent.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from initbench.core.errors import InitbenchError

#: torchrun's environment variable for the number of machines (its ``--nnodes``); when
#: set, a stage is relaunched under torchrun even with one process per machine.
NNODES_ENV = "PET_NNODES"
#: Set by torchrun in every process it starts.
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (it sets ``RANK``, ``LOCAL_RANK``
    and ``WORLD_SIZE``)."""
    environ = os.environ if environ is None else environ
    return all(name in environ for name in TORCHRUN_ENV)


def torchrun_command(
    nproc_per_node: int, module: str, args: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """``python -m torch.distributed.run ... -m <module> <args>``: ``nproc_per_node``
    processes on this machine. On one machine it is ``--standalone`` (a rendezvous on a free
    local port, so parallel stages do not collide); with ``PET_NNODES`` set, torchrun reads
    the rendezvous from its ``PET_*`` variables (``PET_NODE_RANK``, ``PET_MASTER_ADDR``,
    ``PET_MASTER_PORT``, ...: each of its flags, upper-cased)."""
    environ = os.environ if environ is None else environ
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if NNODES_ENV not in environ:
        command.append("--standalone")
    return [*command, "-m", module, *args]


def relaunch_under_torchrun(nproc_per_node: int, threads: int = 0) -> None:
    """Return at once when this process should do the stage's work itself: it was started
    by torchrun, or it is the only process (``nproc_per_node`` 1 and no ``PET_NNODES``).
    Otherwise run torchrun on the same ``python -m`` module with the same arguments
    (:func:`torchrun_command`), print what its processes print without torchrun's own
    lines (:class:`~initbench.training.torchrun_log.TorchrunLog`: each ``error:`` line
    once, a failed process named in one line), and exit with its status. Check the
    stage's inputs before calling this, so a bad one is reported once, by one process.

    ``OMP_NUM_THREADS`` is set for the processes, unless it is set already: ``threads``
    (params.yaml's), or with 0 the CPUs shared out among the processes; torchrun then
    prints no banner about it.

    Raises:
        ValueError: ``nproc_per_node`` is below 1.
        InitbenchError: the program was not started with ``python -m`` (torchrun needs the
            module's name).
        SystemExit: with torchrun's exit status, once it is done.
    """
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if launched_by_torchrun() or (nproc_per_node == 1 and NNODES_ENV not in os.environ):
        return
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None:
        raise InitbenchError("run the stage as `python -m stages.<name>` to use several processes")
    command = torchrun_command(nproc_per_node, spec.name, sys.argv[1:])
    env = dict(os.environ)
    env.setdefault(
        "OMP_NUM_THREADS", str(threads or max(1, (os.cpu_count() or 1) // nproc_per_node))
    )
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(run_torchrun(command, env, nproc_per_node))


def run_torchrun(command: Sequence[str], env: Mapping[str, str], nproc: int) -> int:
    """Run ``command`` (torchrun), its stderr filtered through a
    :class:`~initbench.training.torchrun_log.TorchrunLog`; return its exit status. A Ctrl-C
    reaches torchrun and its processes too: their lines are still read to the end, then
    it is raised here."""
    import subprocess

    from initbench.training.torchrun_log import TorchrunLog

    log = TorchrunLog(nproc)
    interrupted = False
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                          errors="replace") as process:  # fmt: skip
        assert process.stderr is not None
        while True:
            try:
                line = process.stderr.readline()
            except KeyboardInterrupt:
                interrupted = True
                continue
            if not line:
                break
            for shown in log.feed(line.rstrip("\n")):
                print(shown, file=sys.stderr, flush=True)
        returncode = process.wait()
    if interrupted or "interrupted" in log.errors:
        raise KeyboardInterrupt
    for shown in log.finish(returncode):
        print(shown, file=sys.stderr)
    return returncode


def join_process_group(device: torch.device) -> torch.device:
    """Under torchrun: join the process group (NCCL for CUDA, gloo for CPU) and return
    this process's device (``cuda:LOCAL_RANK`` for CUDA). The group is left at exit.
    Processes other than a machine's first send their stdout to ``os.devnull``.
    Otherwise: return ``device`` unchanged and do nothing.

    Raises:
        InitbenchError: torchrun started more processes on this machine than it has GPUs.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InitbenchError(
                f"process {local_rank} of this machine has no GPU of its own: "
                f"{torch.cuda.device_count()} found; set nproc_per_node to at most that"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(dist.destroy_process_group)
    if local_rank != 0:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (until exit)
    return device


def world_size() -> int:
    """Processes in the group; 1 without one."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``; 0 without a group."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_local_main() -> bool:
    """True in a single process and in each machine's first process (``LOCAL_RANK`` 0):
    the one that prints and writes outputs."""
    return not dist.is_initialized() or int(os.environ.get("LOCAL_RANK", "0")) == 0


def rank_seed(seed: int) -> int:
    """The seed of this process's own random stream (dropout masks, augmentations): ``seed``
    in a single process and on rank 0, ``seed + rank * 2**32`` on the others, so ranks draw
    differently and no single-process run of a seed below ``2**32`` shares their stream."""
    return seed + rank() * 2**32


def data_parallel(model: nn.Module, device: torch.device, seed: int) -> nn.Module:
    """``model`` itself in a single process. In a group: ``DistributedDataParallel(model)``
    (which starts every process from rank 0's weights and buffers), with the global torch
    RNG of ranks > 0 reseeded from :func:`rank_seed`, so their dropout masks differ."""
    if world_size() == 1:
        return model
    if rank() > 0:
        torch.manual_seed(rank_seed(seed))
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean of a scalar over all processes (``value.item()`` in a single process)."""
    if world_size() == 1:
        return value.item()
    total = value.detach().reshape(1).clone()
    dist.all_reduce(total)
    return total.item() / world_size()


def sum_over_ranks(values: list[float]) -> list[float]:
    """Each of ``values`` summed over all processes (``values`` itself in a single process)."""
    if world_size() == 1:
        return values
    # NCCL reduces CUDA tensors only; gloo (CPU) either.
    device = torch.cuda.current_device() if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """``(n, D)`` rows of every process -> ``(world_size * n, D)``, in rank order, with
    gradients flowing back to each process's own rows: the backward sums every process's
    gradient for them (a reduce-scatter). ``rows`` itself in a single process. Every
    process must pass the same shape.

    PyTorch's functional ``all_gather_single``, which torch 2.14 names as the replacement
    of the deprecated ``torch.distributed.nn.functional.all_gather``."""
    if world_size() == 1:
        return rows
    from torch.distributed._functional_collectives import all_gather_single

    return all_gather_single(rows, 0, dist.group.WORLD)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process, in place.

    In training, DDP broadcasts them before each forward, but the last forward leaves each
    process with statistics updated from its own shard; call this before evaluating, so
    every process evaluates, and writes, the same model. Nothing in a single process."""
    if world_size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def _batchnorms(model: nn.Module) -> dict[str, nn.Module]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    }


@contextmanager
def sync_batchnorm(model: nn.Module, device: torch.device) -> Iterator[bool]:
    """Within the block, every BatchNorm of ``model`` is an ``nn.SyncBatchNorm`` (statistics
    of the global batch), when there is a process group and ``device`` is CUDA: PyTorch's
    SyncBatchNorm runs on GPUs only, so on CPU each process keeps its own statistics.
    Yields whether the layers were converted. On exit the original BatchNorm modules are
    back; they share their parameters and buffers with the SyncBatchNorm layers
    (``convert_sync_batchnorm`` reuses them), so they hold the trained state.

    SimCLR needs it: with per-GPU statistics the two views of an image share batch
    statistics that its negatives on other GPUs do not, and the model can use that to find
    the positive (Chen et al. 2020, Sec. 2.2 "Global BN").
    """
    if world_size() == 1 or device.type != "cuda":
        yield False
        return
    originals = _batchnorms(model)
    nn.SyncBatchNorm.convert_sync_batchnorm(model)
    try:
        yield True
    finally:
        for name, original in originals.items():
            synced = model.get_submodule(name)
            original.train(synced.training)
            model.set_submodule(name, original)
