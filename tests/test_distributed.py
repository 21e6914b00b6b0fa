"""Tests of initbench.training.distributed: the torchrun launch, sharded batches, gathered NT-Xent,
and a real 2-process gloo run of a stage on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DistributedSampler

from initbench.core.errors import InitbenchError
from initbench.data.dataset import SPLITS, Dataset, Split, save_dataset
from initbench.inits.losses import gathered_nt_xent, nt_xent
from initbench.models.transfer import read_checkpoint
from initbench.training import distributed
from initbench.training.loop import batches, steps_per_epoch, train_batches
from initbench.training.torchrun_log import TorchrunLog

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
#: What torchrun sets in each process; none may leak into a test's launch decision.
LAUNCH_ENV = (*distributed.TORCHRUN_ENV, distributed.NNODES_ENV)


def _split(n: int) -> Split:
    """Image ``i`` holds the value ``i`` everywhere, so a batch's images name its indices."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return Split(images, torch.arange(n))


def _ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


# --------------------------------------------------------------------------- sharded batches


@pytest.mark.parametrize(("n", "batch_size"), [(37, 8), (33, 8), (5, 8), (1, 8)])
def test_one_process_trains_on_the_batches_it_always_did(n, batch_size):
    """World size 1 is the single-process stream: the same permutation and batches as
    ``batches``, minus a last batch of one image (``steps_per_epoch`` counts the rest)."""
    split = _split(n)
    got = [_ids(x) for x, _ in train_batches(split, batch_size, torch.Generator().manual_seed(3))]
    expected = [
        _ids(x)
        for x, _ in batches(split, batch_size, torch.Generator().manual_seed(3))
        if len(x) >= 2 or n < 2
    ]
    assert got == expected
    assert len(got) == steps_per_epoch(n, batch_size)


@pytest.mark.parametrize(("n", "batch_size"), [(40, 8), (38, 8), (33, 8), (13, 4), (3, 4)])
def test_rank_shards_are_the_single_process_batches_split_evenly(n, batch_size):
    """Together, the ranks see each single-process batch (padded with the pass's first
    images when its size is odd), in equal shares, for the same number of steps."""
    split = _split(n)

    def stream(rank: int, world: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(5)
        return [_ids(x) for x, _ in train_batches(split, batch_size, generator, rank, world)]

    single = stream(0, 1)
    shards = [stream(rank, WORLD) for rank in range(WORLD)]
    first = torch.randperm(n, generator=torch.Generator().manual_seed(5)).tolist()
    assert all(len(shard) == len(single) for shard in shards)
    for step, whole in enumerate(single):
        parts = [shard[step] for shard in shards]
        assert len({len(part) for part in parts}) == 1, "ranks got unequal shares"
        padded = whole + first[: -len(whole) % WORLD]
        assert [i for row in zip(*parts, strict=True) for i in row] == padded


def test_rank_shards_follow_distributed_sampler():
    """With ``world_size`` dividing ``batch_size``, rank ``r``'s batches are PyTorch's
    ``DistributedSampler`` shard of the same permutation, cut into per-rank batches."""
    n, batch_size = 30, 8  # 30 = 3 full batches + 6; the sampler pads the epoch to 30
    split = _split(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(2)).tolist()
    for rank in range(WORLD):
        sampler = DistributedSampler(order, num_replicas=WORLD, rank=rank, shuffle=False)
        shard = [order[i] for i in sampler]
        per_rank = batch_size // WORLD
        expected = [shard[i : i + per_rank] for i in range(0, len(shard), per_rank)]
        generator = torch.Generator().manual_seed(2)
        got = [_ids(x) for x, _ in train_batches(split, batch_size, generator, rank, WORLD)]
        assert got == expected


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\)"):
        next(train_batches(_split(4), 2, torch.Generator(), rank=2, world_size=2))


# --------------------------------------------------------------------------- one process


def test_one_process_uses_no_process_group(monkeypatch):
    """Without torchrun nothing is wrapped or gathered: the default path is unchanged."""
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not dist.is_initialized()
    model = nn.Linear(3, 2)
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    assert distributed.data_parallel(model, torch.device("cpu"), seed=0) is model
    assert distributed.gather_rows(z1) is z1
    assert torch.equal(gathered_nt_xent(z1, z2, 0.5), nt_xent(z1, z2, 0.5))
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.is_local_main()
    assert distributed.rank_seed(7) == 7
    assert distributed.sum_over_ranks([3, 4]) == [3, 4]
    assert distributed.join_process_group(torch.device("cpu")) == torch.device("cpu")
    assert not dist.is_initialized()


def test_sync_batchnorm_swaps_in_and_back_sharing_the_trained_state(monkeypatch):
    """With a group on CUDA every BatchNorm becomes a SyncBatchNorm for the block; after
    it the model's own modules are back and hold what the block changed."""
    monkeypatch.setattr(distributed, "world_size", lambda: WORLD)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm2d(3)))
    own = [model[1], model[2][0]]
    with distributed.sync_batchnorm(model, torch.device("cuda")) as synced:
        assert synced
        assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][0], nn.SyncBatchNorm)
        assert model[1].weight is own[0].weight
        model[1].running_mean.add_(1.5)
        model[2][0].eval()
    assert model[1] is own[0] and model[2][0] is own[1]
    assert torch.equal(own[0].running_mean, torch.full((3,), 1.5))
    assert not own[1].training
    with distributed.sync_batchnorm(model, torch.device("cpu")) as synced:  # GPU-only in torch
        assert not synced and model[1] is own[0]


# --------------------------------------------------------------------------- the launch


@pytest.fixture
def launch(monkeypatch):
    """Runs ``relaunch_under_torchrun`` as ``python -m stages.simclr --seed 1`` would, with
    torchrun's command recorded instead of run; returns the recorded commands."""
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="stages.simclr")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/repo/stages/simclr.py", "--seed", "1"])
    calls: list[list[str]] = []

    def record(command, env, nproc):
        calls.append(list(command))
        return 0

    monkeypatch.setattr(distributed, "run_torchrun", record)
    return calls


def test_one_process_per_node_runs_the_stage_in_this_process(launch):
    distributed.relaunch_under_torchrun(1)
    assert launch == []


def test_several_processes_reexecute_the_stage_under_torchrun(launch):
    with pytest.raises(SystemExit) as done:
        distributed.relaunch_under_torchrun(4)
    assert done.value.code == 0
    assert launch == [[
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=4", "--standalone",
        "-m", "stages.simclr", "--seed", "1",
    ]]  # fmt: skip


def test_several_machines_take_the_rendezvous_from_torchruns_variables(launch, monkeypatch):
    monkeypatch.setenv("PET_NNODES", "2")
    with pytest.raises(SystemExit):
        distributed.relaunch_under_torchrun(1)
    assert launch == [[
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1",
        "-m", "stages.simclr", "--seed", "1",
    ]]  # fmt: skip


def test_a_process_started_by_torchrun_is_not_relaunched(launch, monkeypatch):
    for name, value in zip(distributed.TORCHRUN_ENV, ("1", "1", "2"), strict=True):
        monkeypatch.setenv(name, value)
    distributed.relaunch_under_torchrun(2)
    assert launch == []


def test_relaunch_refuses_fewer_than_one_process(launch):
    with pytest.raises(ValueError, match="nproc_per_node must be >= 1, got 0"):
        distributed.relaunch_under_torchrun(0)


def test_relaunch_needs_the_module_name(launch, monkeypatch):
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None)
    with pytest.raises(InitbenchError, match=r"python -m stages\.<name>"):
        distributed.relaunch_under_torchrun(2)
    assert launch == []


# --------------------------------------------------------------------------- two processes


def _nt_xent_worker(rank: int, init_file: str) -> None:
    """One of 2 gloo processes: its half of a batch through a DDP-wrapped projection,
    NT-Xent over the gathered rows; loss and gradients must be the single-process ones."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        assert distributed.world_size() == WORLD and distributed.rank() == rank
        n, dim = 6, 5  # images per rank, features
        generator = torch.Generator().manual_seed(0)
        x1, x2 = torch.randn(2, WORLD * n, dim, generator=generator)
        torch.manual_seed(1)
        single = nn.Linear(dim, 4)
        shared = nn.Linear(dim, 4)
        shared.load_state_dict(single.state_dict())

        # The reference: one process, the whole batch.
        expected = nt_xent(single(x1), single(x2), temperature=0.3)
        expected.backward()

        model = distributed.data_parallel(shared, torch.device("cpu"), seed=0)
        mine = slice(rank * n, (rank + 1) * n)
        loss = gathered_nt_xent(model(x1[mine]), model(x2[mine]), temperature=0.3)
        loss.backward()  # DDP averages the parameters' gradients over the processes

        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
        for ours, theirs in zip(shared.parameters(), single.parameters(), strict=True):
            torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-7)
        assert distributed.mean_over_ranks(torch.tensor(float(rank))) == 0.5
        assert distributed.sum_over_ranks([1, rank]) == [2.0, 1.0]
        # Each rank its own dropout stream; rank 0 keeps the single-process one.
        assert torch.initial_seed() == (1 if rank == 0 else rank * 2**32)
        norm = nn.BatchNorm1d(3)
        norm.running_mean.fill_(rank + 1.0)
        distributed.broadcast_buffers(norm)
        assert torch.equal(norm.running_mean, torch.ones(3))  # rank 0's
    finally:
        dist.destroy_process_group()


def test_nt_xent_on_two_processes_equals_the_concatenated_batch(tmp_path):
    """gloo, 2 processes: each process's loss is the single-process loss of both halves
    together, and the gradients (through the gather, averaged by DDP) are its gradients."""
    torch.multiprocessing.spawn(
        _nt_xent_worker, args=(str(tmp_path / "rendezvous"),), nprocs=WORLD, join=True
    )


def _tiny_project(root: Path) -> None:
    """A 48-image dataset of 8x8 bars and a params.yaml for a tiny 2-process run."""
    rng = np.random.default_rng(0)
    n = 48
    labels = np.arange(n) % 2
    images = np.zeros((n, 1, 8, 8), np.uint8)
    for i, offset in enumerate(rng.integers(0, 6, n)):
        if labels[i]:
            images[i, 0, offset : offset + 2, :] = 255
        else:
            images[i, 0, :, offset : offset + 2] = 255
    split = np.array([SPLITS.index("train")] * 32 + [SPLITS.index("val")] * 8 + [2] * 8)
    dataset = Dataset(classes=["h", "v"], paths=[f"{labels[i]}/{i}.png" for i in range(n)],
                      images=images, labels=labels, split=split, groups=np.arange(n),
                      skipped=[], ignored={})  # fmt: skip
    save_dataset(root / "dataset", dataset)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params.update(device="cpu", threads=1, nproc_per_node=WORLD)
    params["data"]["image_size"] = 8
    params["model"].update(channels=[4, 8], dropout=[0.1, 0.1], hidden=8)
    params["kmeans"]["clusters"] = 4
    params["simclr"].update(epochs=1, min_steps=6, batch_size=8, projection_dim=8)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def test_simclr_stage_relaunches_on_two_processes_and_rank_zero_writes(tmp_path):
    """``python -m stages.simclr`` with ``nproc_per_node: 2`` re-executes itself under
    torchrun (gloo on CPU); the run completes, rank 0 writes every output once, and the
    other process prints nothing."""
    _tiny_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "stages.simclr", "--dataset", "dataset", "--seed", "0",
         "--out", "out/simclr.pt", "--report", "out/simclr.json", "--plots", "out/plots"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # Printed by rank 0 only, and only when the group has more than one process:
    assert sum("SyncBatchNorm needs CUDA" in line for line in lines) == 1, done.stdout
    assert sum(line.startswith("simclr: kNN val accuracy") for line in lines) == 1, done.stdout
    assert sum(line.startswith("simclr: done in") for line in lines) == 1, done.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "plots", "plots/history.json", "simclr.json", "simclr.pt",
    ]  # fmt: skip
    checkpoint = read_checkpoint(out / "simclr.pt")
    assert checkpoint["strategy"] == "simclr"
    history = yaml.safe_load((out / "plots" / "history.json").read_text())
    assert history[-1]["step"] == 6  # the single-process budget: max(1 * 4 steps, 6)


def test_compare_run_fine_tunes_on_two_processes_and_probes_once_in_the_first(tmp_path):
    """One ``compare_run`` variant with ``nproc_per_node: 2``: the fine-tunes train under
    torchrun, the linear probes run in the first process alone, and the file holds each run
    once, the probes' rows equal to those of a one-process run of the probes."""
    _tiny_project(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
    params["compare"]["label_fractions"] = [0.5, 1.0]
    params["finetune"].update(epochs=1, min_steps=4, batch_size=8)
    params["linear_probe"]["cv_folds"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    def stage(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    stage("stages.init_random", "--dataset", "dataset", "--seed", "0", "--out", "init.pt")
    done = stage("stages.compare_run", "--dataset", "dataset", "--init", "init.pt", "--seed",
                 "0", "--out", "out/both.json")  # fmt: skip
    rows = json.loads((tmp_path / "out" / "both.json").read_text())
    assert [(r["protocol"], r["label_fraction"]) for r in rows] == [
        ("finetune", 0.5),
        ("finetune", 1.0),
        ("linear_probe", 0.5),
        ("linear_probe", 1.0),
    ]
    assert sum(line.startswith("compare_run: linear_probe") for line in
               done.stdout.splitlines()) == 2, done.stdout  # fmt: skip
    assert rows[0]["run_info"][0]["processes"] == 2  # the fine-tunes ran under torchrun
    # the probes alone are never relaunched: one process
    stage("stages.compare_run", "--dataset", "dataset", "--init", "init.pt", "--seed", "0",
          "--protocols", "linear_probe", "--out", "out/probes.json")  # fmt: skip
    alone = json.loads((tmp_path / "out" / "probes.json").read_text())
    assert alone[0]["run_info"][0]["processes"] == 1
    assert [{k: v for k, v in r.items() if k != "run_info"} for r in rows[2:]] == [
        {k: v for k, v in r.items() if k != "run_info"} for r in alone
    ]


# --------------------------------------------------------------------------- torchrun's output

#: What torchrun 2.14 printed when process 1 of 2 was killed (trimmed paths, same shape).
KILLED = """
*****************************************
Setting OMP_NUM_THREADS environment variable for each process to be 1 in default, to avoid your system being overloaded, please further tune the variable for optimal performance in your application as needed.
*****************************************
W1207 21:52:04.602000 9542 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 9548 closing signal SIGTERM
E1207 21:52:04.610000 9542 .venv/lib/python3.11/site-packages/torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 9549) of binary: /usr/bin/python
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/torch/distributed/run.py", line 1142, in <module>
    main()
  File "/venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 386, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
======================================================
stages.simclr FAILED
------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-07_21:52:04
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 9548)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 9548
------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_21:52:04
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 9549)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 9549
======================================================
"""


def _filtered(text: str, returncode: int, nproc: int = 2) -> list[str]:
    log = TorchrunLog(nproc)
    shown = [out for line in text.splitlines() for out in log.feed(line)]
    return shown + log.finish(returncode)


def test_a_killed_process_ends_the_stage_with_one_line_naming_it():
    assert _filtered(KILLED, 1) == [
        "error: process 1 of 2 failed (killed by SIGKILL); any error it printed is above"
    ]


def test_every_process_printing_the_same_error_prints_it_once():
    both = "error: params.yaml: x\nerror: params.yaml: x\n" + KILLED.replace("-9 (pid", "1 (pid")
    assert _filtered(both, 1) == ["error: params.yaml: x"]


def test_a_process_traceback_and_its_lines_pass_through():
    own = ("round 1/10 loss 0.5\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
           "ValueError: bad\n")  # fmt: skip
    assert _filtered(own, 0) == ["round 1/10 loss 0.5", "Traceback (most recent call last):",
                                 '  File "x.py", line 1', "ValueError: bad"]  # fmt: skip


def test_a_stage_on_two_processes_given_a_missing_dataset_prints_one_line(tmp_path):
    _tiny_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "stages.simclr", "--dataset", "missing", "--seed", "0",
         "--out", "out/simclr.pt", "--report", "out/simclr.json", "--plots", "out/plots"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: missing/classes.json: missing; run the ingest stage (`dvc repro`)"
    ]


def test_a_failure_inside_the_processes_prints_its_error_once(tmp_path):
    # The checkpoint is read by every process after torchrun started them.
    _tiny_project(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
    params["compare"]["label_fractions"] = [0.5]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "stages.compare_run", "--protocols", "finetune", "--dataset",
         "dataset", "--init", "nowhere.pt", "--seed", "0", "--label-fractions", "0.5",
         "--out", "out/run.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nowhere.pt"), done.stderr
