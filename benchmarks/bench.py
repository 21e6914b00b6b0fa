"""`make bench`: initbench's code against plain baselines, side by side, in one table.

    python benchmarks/bench.py                      # everything; writes reports/bench.md
    python benchmarks/bench.py --only finetune simclr --rounds 3

Every figure is a ratio of two sides measured in this run on the same inputs, model,
batch size and thread count. The sides are interleaved round by round (one round of
each side, then the next round), so a slow spell of a noisy machine hits both; each row
gives the median over rounds and the spread (lowest and highest per-round ratio). The
first round of each side is a warm-up and is not counted.

Rows:
- fine-tune: :func:`initbench.training.supervised.fit` (the real loop: uint8 batches, normalization,
  dropout, accuracy counting) against a bare loop of the same model on float tensors
  already in memory, in NCHW and in channels-last layout.
- SimCLR: :func:`initbench.inits.simclr.train_simclr` (batched augmentation on tensors) against
  the usual recipe: per-image torchvision transforms on PIL images in a DataLoader (with
  0 and with 2 worker processes), the same backbone, projection head and NT-Xent.
- kNN and linear probe: :mod:`initbench.training.probes` against a straightforward per-batch
  version (features of 64-image batches; cosine top-k in torch; a torch linear layer
  trained with Adam). Both sides' accuracies are printed, so the speed is not bought with
  a different answer.
- ingest: ``benchmarks/ingest_bench.py`` (generated JPEG folders, never in the repo), and
  its large-picture case (12 panoramas, 8 decoders, with and without the memory bound).
- pipeline: wall time per stage of the default ``make repro``, before and after, from
  ``reports/bench_pipeline.json`` (written by ``benchmarks/pipeline.py``, which takes
  about 20 minutes on 2 cores, so it is not re-run here), and the share of each stage's
  process that is not training, from ``reports/bench_overhead.json`` (written by
  ``benchmarks/overhead.py``, about 7 minutes).

Inputs are generated (``benchmarks/common.py``: synthetic 10-class gratings at
``params.yaml``'s ``data.image_size`` and ``data.channels``); nothing is downloaded. Every
model, the baselines' too, is ``params.yaml``'s (``model``, ``simclr.projection_dim``),
built by the library's builders.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import common
from common import CLASSES

from initbench.data.dataset import Split
from initbench.data.transforms import Normalize
from initbench.inits.simclr import train_simclr
from initbench.params import Params
from initbench.training.probes import encode, knn_accuracy, linear_probe
from initbench.training.setup import configure_torch, resolve_device
from initbench.training.supervised import fit

#: Per-channel mean and std of :func:`common.gratings` on the 0..1 scale (all channels alike).
MEAN, STD = 0.45, 0.25
SECTIONS = ("finetune", "simclr", "probes", "ingest", "pipeline")


def synthetic_images(params: Params, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`common.gratings` at ``params``' image size and channels."""
    return common.gratings(n, seed, params.data.image_size, params.data.channels)


def normalize_for(params: Params, device: torch.device) -> Normalize:
    return Normalize([MEAN] * params.data.channels, [STD] * params.data.channels).to(device)


@dataclass
class Row:
    name: str
    unit: str
    ours: list[float]  # per round, higher is better
    baseline: list[float]
    baseline_name: str
    target: float | None = None
    note: str = ""

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours, self.baseline, strict=True)]

    def cells(self) -> list[str]:
        r = self.ratios()
        target = "" if self.target is None else f">= {self.target:g}x"
        met = "" if self.target is None else (" yes" if statistics.median(r) >= self.target
                                               else " **no**")  # fmt: skip
        return [
            self.name,
            f"{statistics.median(self.ours):,.0f} {self.unit}",
            f"{statistics.median(self.baseline):,.0f} {self.unit} ({self.baseline_name})",
            f"**{statistics.median(r):.2f}x**",
            f"{min(r):.2f}-{max(r):.2f}",
            target + met,
            self.note,
        ]


def interleave(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each side once per round, in turn; the first round is a warm-up and dropped.
    Each side returns its figure for the round (higher is better)."""
    results: dict[str, list[float]] = {name: [] for name in sides}
    for index in range(rounds + 1):
        for name, side in sides.items():
            value = side()
            if index:
                results[name].append(value)
        print(f"  round {index}/{rounds}: "
              + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in results.items() if v), flush=True)  # fmt: skip
    return results


def bench_finetune(
    params: Params, device: torch.device, batch: int, steps: int, rounds: int
) -> list[Row]:
    images, labels = synthetic_images(params, batch * steps, seed=0)
    train = Split(images, labels)
    val = Split(images[:2], labels[:2])
    normalize = normalize_for(params, device)

    def model() -> nn.Module:
        return common.classifier(params, seed=0).to(device)

    def real() -> float:
        classifier = model()
        start = time.perf_counter()
        fit(classifier, normalize, train, val, epochs=1, min_steps=0, lr=1e-3, batch_size=batch,
            seed=0, device=device, log=lambda line: None)  # fmt: skip
        return len(train) / (time.perf_counter() - start)

    floats = normalize(images.to(device))
    targets = labels.to(device)

    def bare(layout: torch.memory_format) -> Callable[[], float]:
        classifier = model().to(memory_format=layout)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3)
        x = floats.contiguous(memory_format=layout)
        classifier.train()

        def side() -> float:
            start = time.perf_counter()
            for step in range(steps):
                xb = x[step * batch : (step + 1) * batch]
                # the blocks directly: Encoder.forward would convert to channels-last
                logits = classifier.head(classifier.encoder.blocks(xb))
                loss = nn.functional.cross_entropy(
                    logits, targets[step * batch : (step + 1) * batch]
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return batch * steps / (time.perf_counter() - start)

        return side

    result = interleave({"fit": real, "bare NCHW": bare(torch.contiguous_format),
                         "bare channels-last": bare(torch.channels_last)}, rounds)  # fmt: skip
    faster = max(("bare NCHW", "bare channels-last"),
                 key=lambda k: statistics.median(result[k]))  # fmt: skip
    note = f"batch {batch}, {steps} steps a round"
    return [
        Row("fine-tune step", "img/s", result["fit"], result[faster], f"{faster} loop",
            target=0.9, note=note),
        Row("fine-tune step", "img/s", result["fit"], result["bare NCHW"], "bare NCHW loop",
            note=note),
    ]  # fmt: skip


class _TwoViews(torch.utils.data.Dataset):
    """The usual SimCLR data path: a PIL image, two independent torchvision pipelines."""

    def __init__(self, images: torch.Tensor) -> None:
        from torchvision.transforms import v2

        channels, size = images.shape[1], images.shape[-1]
        self.images = [common.to_pil(image) for image in images]
        s = 0.5
        self.transform = v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([MEAN] * channels, [STD] * channels),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return self.transform(image), self.transform(image)


def bench_simclr(
    params: Params, device: torch.device, batch: int, steps: int, rounds: int
) -> list[Row]:
    from initbench.inits.losses import nt_xent

    images, labels = synthetic_images(params, batch * steps, seed=1)
    train, val = Split(images, labels), Split(images[:8], labels[:8])
    normalize = normalize_for(params, device)
    temperature = params.simclr.temperature

    def real() -> float:
        model = common.simclr(params, seed=0).to(device)
        result = train_simclr(model, normalize, train, val, epochs=1, min_steps=0, lr=1e-3,
                              batch_size=batch, temperature=temperature, seed=0, device=device,
                              log=lambda line: None)  # fmt: skip
        return result.pairs_per_s  # optimizer steps only: the kNN probes are not timed

    def loader_side(workers: int) -> Callable[[], float]:
        loader = torch.utils.data.DataLoader(
            _TwoViews(images), batch_size=batch, shuffle=True, drop_last=True,
            num_workers=workers, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        model = common.simclr(params, seed=0).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()

        def side() -> float:
            start = time.perf_counter()
            for view1, view2 in loader:
                loss = nt_xent(model(view1.to(device)), model(view2.to(device)), temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            return batch * steps / (time.perf_counter() - start)

        return side

    result = interleave({"train_simclr": real, "DataLoader 0 workers": loader_side(0),
                         "DataLoader 2 workers": loader_side(2)}, rounds)  # fmt: skip
    note = f"batch {batch}, {steps} steps a round"
    return [
        Row("SimCLR step incl. augmentation", "pairs/s", result["train_simclr"],
            result[name], f"torchvision per-image, {name}", target=3.5, note=note)
        for name in ("DataLoader 0 workers", "DataLoader 2 workers")
    ]  # fmt: skip


def _batch_features(encoder: nn.Module, normalize: Normalize, images: torch.Tensor,
                    device: torch.device) -> torch.Tensor:  # fmt: skip
    """The straightforward way: batches of 64, NCHW, features kept as torch tensors."""
    encoder.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 64):
            out.append(encoder.blocks(normalize(images[start : start + 64].to(device))).flatten(1))
    return torch.cat(out)


def bench_probes(
    params: Params, device: torch.device, n_train: int, n_eval: int, rounds: int
) -> list[Row]:
    images, labels = synthetic_images(params, n_train + n_eval, seed=2)
    train_x, train_y = images[:n_train], labels[:n_train]
    eval_x, eval_y = images[n_train:], labels[n_train:]
    normalize = normalize_for(params, device)
    encoder = common.encoder(params, seed=0).to(device)
    # the same weights (the same seed), in the NCHW layout of a plain torch model
    baseline_encoder = common.encoder(params, seed=0).to(
        device, memory_format=torch.contiguous_format
    )
    accuracies: dict[str, float] = {}

    def knn_real() -> float:
        start = time.perf_counter()
        accuracies["knn ours"] = knn_accuracy(
            encode(encoder, normalize, train_x, device), train_y.numpy(),
            encode(encoder, normalize, eval_x, device), eval_y.numpy(),
        )  # fmt: skip
        return (n_train + n_eval) / (time.perf_counter() - start)

    def knn_baseline() -> float:
        start = time.perf_counter()
        bank = nn.functional.normalize(
            _batch_features(baseline_encoder, normalize, train_x, device)
        )
        query = nn.functional.normalize(
            _batch_features(baseline_encoder, normalize, eval_x, device)
        )
        correct = 0
        for i in range(0, len(query), 64):
            top = (query[i : i + 64] @ bank.T).topk(20, dim=1).indices
            votes = nn.functional.one_hot(train_y.to(device)[top], CLASSES).sum(1)
            correct += (votes.argmax(1).cpu() == eval_y[i : i + 64]).sum().item()
        accuracies["knn baseline"] = correct / len(query)
        return (n_train + n_eval) / (time.perf_counter() - start)

    def lp_real() -> float:
        start = time.perf_counter()
        result = linear_probe(
            encode(encoder, normalize, train_x, device), train_y.numpy(),
            encode(encoder, normalize, eval_x, device), eval_y.numpy(), Cs=[1.0], max_iter=1000,
        )  # fmt: skip
        accuracies["linear probe ours"] = result.accuracy
        return (n_train + n_eval) / (time.perf_counter() - start)

    def lp_baseline(epochs: int = 30) -> float:
        start = time.perf_counter()
        features = _batch_features(baseline_encoder, normalize, train_x, device)
        mean, std = features.mean(0), features.std(0) + 1e-6
        torch.manual_seed(0)
        head = nn.Linear(features.shape[1], CLASSES).to(device)
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
        y = train_y.to(device)
        for _ in range(epochs):
            order = torch.randperm(len(features))
            for i in range(0, len(order), 64):
                index = order[i : i + 64]
                loss = nn.functional.cross_entropy(head((features[index] - mean) / std), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        test = (_batch_features(baseline_encoder, normalize, eval_x, device) - mean) / std
        with torch.no_grad():
            predicted = head(test).argmax(1).cpu()
        accuracies["linear probe baseline"] = (predicted == eval_y).float().mean().item()
        return (n_train + n_eval) / (time.perf_counter() - start)

    knn = interleave({"knn ours": knn_real, "knn baseline": knn_baseline}, rounds)
    lp = interleave({"probe ours": lp_real, "probe baseline": lp_baseline}, rounds)
    note = f"{n_train:,} train + {n_eval:,} eval images; accuracy ours {{}} / baseline {{}}"
    return [
        Row("kNN probe (features + k=20 cosine vote)", "img/s", knn["knn ours"],
            knn["knn baseline"], "per-batch torch top-k",
            note=note.format(f"{accuracies['knn ours']:.3f}", f"{accuracies['knn baseline']:.3f}")),
        Row("linear probe (features + fit)", "img/s", lp["probe ours"], lp["probe baseline"],
            "per-batch features, torch Linear + Adam, 30 epochs",
            note=note.format(f"{accuracies['linear probe ours']:.3f}",
                             f"{accuracies['linear probe baseline']:.3f}")),
    ]  # fmt: skip


def table(rows: list[Row]) -> str:
    head = ["figure", "initbench", "baseline", "ratio (median)", "spread", "target", "setting"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def ingest_section(rounds: int) -> str:
    try:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import ingest_bench
    except ImportError as exc:
        return f"(ingest benchmark unavailable: {exc})"
    with tempfile.TemporaryDirectory(prefix="initbench-bench-") as tmp:
        figures = ingest_bench.markdown(ingest_bench.ingest_figures(Path(tmp), rounds=rounds))
    with tempfile.TemporaryDirectory(prefix="initbench-bench-") as tmp:
        panoramas = ingest_bench.panorama_figures(Path(tmp), PANORAMAS, PANORAMA_DECODERS)
    return (
        f"{figures}\n\nLarge pictures: {PANORAMAS} 12000x9000 PNGs among 80 small "
        f"pictures, {PANORAMA_DECODERS} decoders, with the large-image slots "
        "(`initbench.data.ingest.LARGE_SLOTS`) and with as many slots as decoders (no "
        "bound); peak memory over the process tree and of the largest process:\n\n"
        + ingest_bench.markdown(panoramas)
    )


def overhead_section() -> str:
    """The default budget's table before and after the cut (``reports/bench_overhead_before.json``
    and ``bench_overhead.json``) and, where measured, the converged budget's
    (``reports/bench_overhead_3000.json``: ``overhead.py --set finetune.min_steps=3000``)."""
    path = REPO / "reports" / "bench_overhead.json"
    if not path.exists():
        return "(no `reports/bench_overhead.json`: run `python benchmarks/overhead.py`)"
    sys.path.insert(0, str(REPO / "benchmarks"))
    import overhead

    after = json.loads(path.read_text())
    tables = []
    before_path = REPO / "reports" / "bench_overhead_before.json"
    if before_path.exists():
        before = json.loads(before_path.read_text())
        (total0, trained0), (total1, trained1) = overhead.totals(before), overhead.totals(after)
        tables += [
            f"Before and after the runs of one checkpoint (its fine-tunes at every label "
            f"fraction and its linear probes) shared one process: {total0 / 60:.1f} -> "
            f"{total1 / 60:.1f} min of stage processes, {1 - trained0 / total0:.0%} -> "
            f"{1 - trained1 / total1:.0%} of it not training"
            + (f"; `make repro` {before['repro_wall_s']:,.0f} -> {after['repro_wall_s']:,.0f} s "
               "of wall time (one run each, hours apart)"
               if before.get("repro_wall_s") and after.get("repro_wall_s") else "") + ".",
            "**Before** (a process a fine-tune, and one for an encoder's probes):",
            overhead.markdown(before),
            "**After:**",
        ]  # fmt: skip
    tables.append(overhead.markdown(after))
    longer = REPO / "reports" / "bench_overhead_3000.json"
    if longer.exists():
        tables += ["**At a budget that converges** (before the cut):",
                   overhead.markdown(json.loads(longer.read_text()))]  # fmt: skip
    return "\n\n".join(tables)


#: The ingest section's large-picture case: panoramas and decoders (more than 2 cores).
PANORAMAS, PANORAMA_DECODERS = 12, 8


def pipeline_section() -> str:
    path = REPO / "reports" / "bench_pipeline.json"
    if not path.exists():
        return "(no `reports/bench_pipeline.json`: run `python benchmarks/pipeline.py`)"
    sys.path.insert(0, str(REPO / "benchmarks"))
    import pipeline

    return pipeline.markdown(json.loads(path.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds per side")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", default=str(REPO / "reports" / "bench.md"))
    args = parser.parse_args()
    params = common.bench_params()
    device = resolve_device(args.device)
    configure_torch(device)
    rows: list[Row] = []
    started = time.perf_counter()
    if "finetune" in args.only:
        print("fine-tune: fit against a bare loop", flush=True)
        rows += bench_finetune(params, device, batch=128, steps=12, rounds=args.rounds)
    if "simclr" in args.only:
        print("SimCLR: train_simclr against a torchvision DataLoader", flush=True)
        rows += bench_simclr(params, device, batch=256, steps=4, rounds=args.rounds)
    if "probes" in args.only:
        print("probes: initbench.training.probes against per-batch torch", flush=True)
        rows += bench_probes(params, device, n_train=5000, n_eval=1000, rounds=args.rounds)
    parts = [
        "# Benchmarks",
        "",
        f"`make bench` on {platform.machine()} ({platform.processor() or 'unknown CPU'}), "
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads; "
        f"{args.rounds} counted rounds per side, interleaved. Ratio: initbench / baseline "
        "(higher is better); spread: lowest and highest per-round ratio.",
        "",
        table(rows) if rows else "",
    ]
    if "ingest" in args.only:
        print("ingest: generated JPEG folders", flush=True)
        parts += ["", "## Ingest", "", ingest_section(max(1, args.rounds // 2))]
    if "pipeline" in args.only:
        parts += ["", "## Pipeline (default `make repro`)", "", pipeline_section()]
        parts += ["", "## Time that is not training (default `make repro`)", "",
                  overhead_section()]  # fmt: skip
    text = "\n".join(parts).rstrip() + "\n"
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
