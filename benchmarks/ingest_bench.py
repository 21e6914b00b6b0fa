"""Ingest speed and memory: the ingest stage against a sequential plain-PIL loop, side by side.

    python benchmarks/ingest_bench.py                     # 1k, 4k, 16k mixed-size JPEGs, 3 rounds
    python benchmarks/ingest_bench.py --sizes 1000 --rounds 1
    python benchmarks/ingest_bench.py --scale 100000      # 10k and 100k small JPEGs, ours only
    python benchmarks/ingest_bench.py --panorama 6        # 108-Mpixel PNGs: peak memory
    python benchmarks/ingest_bench.py --panorama 6 --decoders 6   # with and without the bound

Inputs are generated in a temporary folder outside the repo (``--tmpdir``, default the
system's) and removed afterwards. Both sides run as subprocesses from the repo root:
ours is ``python -m stages.ingest`` (scan, parallel decode, split, save; the repo's
``params.yaml`` gives image size and channels), the baseline a loop of PIL
``open`` + ``convert`` + ``ImageOps.fit`` + ``np.stack`` in one process. Wall time
includes interpreter start-up on both sides. Memory is polled every 20 ms from
``/proc`` over the whole process tree (decode workers included): the peak of the
summed RSS (shared libraries counted once per process, so an upper bound) and of
the summed PSS (shared pages split between processes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.02
# ``common`` (which imports torch, for the models) is imported inside the functions that
# need it: the baseline subprocess imports this module, and its measured wall time must
# not include torch's import (about 3 s on 2 cores).


# --------------------------------------------------------------------------- inputs


def link_subset(paths: list[Path], source: Path, folder: Path) -> Path:
    """Hard-link ``paths`` (under ``source``) into ``folder`` with the same layout."""
    for path in paths:
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    return folder


# --------------------------------------------------------------------------- measuring


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/<tid>/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:  # exited meanwhile
            continue
    return found


def _rss_pss_kb(pid: int) -> tuple[int, int]:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("Rss:", "Pss:")))
    except (OSError, ValueError):
        return 0, 0
    return int(fields.get("Rss", "0 kB").split()[0]), int(fields.get("Pss", "0 kB").split()[0])


def run_measured(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` from the repo root; wall time and peak memory of its process tree.

    Returns:
        ``{"seconds", "peak_rss_mb", "peak_pss_mb", "max_process_mb"}``; the last is
        the largest single process's own peak (``ru_maxrss``, exact, not polled).

    Raises:
        RuntimeError: the command failed (the message ends with its log).
    """
    peaks = {"rss": 0, "pss": 0}
    with log.open("w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                sums = [sum(v) for v in zip(*map(_rss_pss_kb, _tree(process.pid)), strict=True)]
                if sums:
                    peaks["rss"] = max(peaks["rss"], sums[0])
                    peaks["pss"] = max(peaks["pss"], sums[1])
                done.wait(POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        poller.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{tail}")
    return {
        "seconds": seconds,
        "peak_rss_mb": peaks["rss"] / 1024,
        "peak_pss_mb": peaks["pss"] / 1024,
        "max_process_mb": usage.ru_maxrss / 1024,
    }


def _ours(folder: Path, work: Path) -> list[str]:
    return [sys.executable, "-m", "stages.ingest", "--data", str(folder),
            "--out", str(work / "dataset"), "--report", str(work / "ingest.json")]  # fmt: skip


def _baseline(folder: Path, image_size: int, channels: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--baseline", str(folder),
            "--image-size", str(image_size), "--channels", str(channels)]  # fmt: skip


def baseline_loop(folder: Path, image_size: int, channels: int) -> np.ndarray:
    """The plain way: open, convert, fit each file in turn (bilinear, as ours); stack.

    Returns:
        uint8 ``(N, H, W)`` or ``(N, H, W, 3)``.
    """
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for path in sorted(folder.rglob("*.jpg")):
        with Image.open(path) as image:
            fitted = ImageOps.fit(
                image.convert(mode), (image_size, image_size), Image.Resampling.BILINEAR
            )
            arrays.append(np.asarray(fitted))
    return np.stack(arrays)


def _data_params() -> tuple[int, int]:
    """``(image_size, channels)`` from the repo's params.yaml, as the stage reads them."""
    from common import bench_params

    data = bench_params().data
    return data.image_size, data.channels


def _check_outside_repo(tmpdir: Path) -> Path:
    tmpdir = Path(tmpdir).resolve()
    if tmpdir == REPO or REPO in tmpdir.parents:
        raise ValueError(f"tmpdir {tmpdir} is inside the repo; bench inputs never go there")
    return tmpdir


# --------------------------------------------------------------------------- figures


def ingest_figures(
    tmpdir: str | os.PathLike[str],
    sizes: tuple[int, ...] = (1000, 4000, 16000),
    rounds: int = 3,
) -> list[dict]:
    """Ours against the plain-PIL loop on mixed-size JPEGs (40..800 px a side), one row per size.

    The largest folder is generated once under ``tmpdir`` (outside the repo) and the
    smaller ones are hard-linked subsets of it. For each size the two sides
    alternate (ours first in even rounds, the baseline first in odd ones).

    Returns:
        One dict per size: ``images``; ``input_mb`` (the JPEG files); ``output_mb``
        (the decoded uint8 arrays);
        ``ours_s``, ``baseline_s`` (median wall seconds); ``ours_images_per_s``,
        ``baseline_images_per_s`` (images over those medians); ``speedup`` (median of
        the per-round ``baseline_s / ours_s``), ``speedup_min``, ``speedup_max``;
        ``ours_peak_mb``, ``baseline_peak_mb`` (highest summed RSS of the process
        tree over the rounds, MB = 2**20 bytes); ``ours_peak_pss_mb``,
        ``baseline_peak_pss_mb`` (the same in PSS); ``ours_peak_minus_output_mb``
        (``ours_peak_mb - output_mb``: what should stay flat); ``rounds``.

    Raises:
        ValueError: ``tmpdir`` is inside the repo.
        RuntimeError: a side failed.
    """
    from common import generate_jpegs

    tmpdir = _check_outside_repo(Path(tmpdir))
    image_size, channels = _data_params()
    source = tmpdir / "jpegs"
    try:
        paths = generate_jpegs(source, max(sizes))
        rows = []
        for n in sizes:
            folder = source if n == max(sizes) else link_subset(paths[:n], source, tmpdir / f"n{n}")
            ours, base = [], []
            for r in range(rounds):
                sides = ["ours", "base"] if r % 2 == 0 else ["base", "ours"]
                for side in sides:
                    work = tmpdir / f"run_{side}"
                    work.mkdir()
                    if side == "ours":
                        ours.append(run_measured(_ours(folder, work), work / "log.txt"))
                    else:
                        command = _baseline(folder, image_size, channels)
                        base.append(run_measured(command, work / "log.txt"))
                    shutil.rmtree(work)
            ratios = [b["seconds"] / o["seconds"] for o, b in zip(ours, base, strict=True)]
            output_mb = n * channels * image_size**2 / 2**20
            ours_s = statistics.median(o["seconds"] for o in ours)
            base_s = statistics.median(b["seconds"] for b in base)
            ours_peak = max(o["peak_rss_mb"] for o in ours)
            rows.append(
                {
                    "images": n,
                    "input_mb": round(sum(p.stat().st_size for p in paths[:n]) / 2**20, 1),
                    "output_mb": round(output_mb, 1),
                    "ours_s": round(ours_s, 2),
                    "baseline_s": round(base_s, 2),
                    "ours_images_per_s": round(n / ours_s),
                    "baseline_images_per_s": round(n / base_s),
                    "speedup": round(statistics.median(ratios), 2),
                    "speedup_min": round(min(ratios), 2),
                    "speedup_max": round(max(ratios), 2),
                    "ours_peak_mb": round(ours_peak),
                    "baseline_peak_mb": round(max(b["peak_rss_mb"] for b in base)),
                    "ours_peak_pss_mb": round(max(o["peak_pss_mb"] for o in ours)),
                    "baseline_peak_pss_mb": round(max(b["peak_pss_mb"] for b in base)),
                    "ours_peak_minus_output_mb": round(ours_peak - output_mb),
                    "rounds": rounds,
                }
            )
            if folder != source:
                shutil.rmtree(folder)
        return rows
    finally:  # the caller's tmpdir keeps nothing of ours
        shutil.rmtree(source, ignore_errors=True)


def scale_figures(tmpdir: str | os.PathLike[str], n: int = 100_000, rounds: int = 1) -> list[dict]:
    """Ours alone on ``n // 10`` and ``n`` small JPEGs (40..120 px a side): does memory stay flat?

    Returns:
        One dict per size: ``images``, ``input_mb``, ``output_mb``, ``ours_s`` (median),
        ``ours_images_per_s``, ``ours_peak_mb``, ``ours_peak_pss_mb``,
        ``ours_max_process_mb`` (largest single process), ``ours_peak_minus_output_mb``,
        ``rounds``; units as in :func:`ingest_figures`.

    Raises:
        ValueError: ``tmpdir`` is inside the repo.
        RuntimeError: the stage failed.
    """
    from common import SMALL_SIDES, generate_jpegs

    tmpdir = _check_outside_repo(Path(tmpdir))
    image_size, channels = _data_params()
    source = tmpdir / "small"
    try:
        paths = generate_jpegs(source, n, sides=SMALL_SIDES)
        rows = []
        for size in (n // 10, n):
            folder = source if size == n else link_subset(paths[:size], source, tmpdir / f"n{size}")
            runs = []
            for _ in range(rounds):
                work = tmpdir / "run_ours"
                work.mkdir()
                runs.append(run_measured(_ours(folder, work), work / "log.txt"))
                shutil.rmtree(work)
            output_mb = size * channels * image_size**2 / 2**20
            seconds = statistics.median(r["seconds"] for r in runs)
            peak = max(r["peak_rss_mb"] for r in runs)
            rows.append(
                {
                    "images": size,
                    "input_mb": round(sum(p.stat().st_size for p in paths[:size]) / 2**20, 1),
                    "output_mb": round(output_mb, 1),
                    "ours_s": round(seconds, 2),
                    "ours_images_per_s": round(size / seconds),
                    "ours_peak_mb": round(peak),
                    "ours_peak_pss_mb": round(max(r["peak_pss_mb"] for r in runs)),
                    "ours_max_process_mb": round(max(r["max_process_mb"] for r in runs)),
                    "ours_peak_minus_output_mb": round(peak - output_mb),
                    "rounds": rounds,
                }
            )
            if folder != source:
                shutil.rmtree(folder)
        return rows
    finally:  # the caller's tmpdir keeps nothing of ours
        shutil.rmtree(source, ignore_errors=True)


def markdown(rows: list[dict]) -> str:
    """``rows`` as a markdown table, keys as column heads."""
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---:|" * len(heads)]
    lines += ["| " + " | ".join(str(row[h]) for h in heads) + " |" for row in rows]
    return "\n".join(lines)


def _ours_decoders(folder: Path, decoders: int, slots: int) -> list[str]:
    """Ingest's library call with ``decoders`` decoders and ``slots`` large-image slots:
    more decoders than this machine's CPUs, so the bound shows on 2 cores too."""
    code = ("import sys; from initbench.data import ingest as m; m.LARGE_SLOTS = int(sys.argv[3]);"
            " d = m.ingest(sys.argv[1], 32, 1, 0.1, 0.2, 0, workers=int(sys.argv[2]));"
            " print(len(d.images), 'images')")  # fmt: skip
    return [sys.executable, "-c", code, str(folder), str(decoders), str(slots)]


def panorama_figures(
    tmpdir: str | os.PathLike[str], n: int, decoders: int | None = None
) -> list[dict]:
    """Ours on ``n`` copies of a 12000x9000 RGB PNG panorama beside 80 small pictures (so
    that the decoders run in parallel, as for any folder of 64 files or more): the peak
    memory of the process tree when every decoder may meet a 108-Mpixel picture (at most
    ``initbench.data.ingest.LARGE_SLOTS`` of them decode at once).

    With ``decoders``, ingest runs with that many decoders (more than the CPUs allowed),
    once with the slots and once with as many slots as decoders (no bound), 1 channel:
    what the slots save where every decoder could hold a panorama.

    Returns:
        One dict a run: ``panoramas``, ``decoders``, ``large_slots``, ``ours_s``,
        ``ours_peak_mb``, ``ours_max_process_mb``.

    Raises:
        ValueError: ``tmpdir`` is inside the repo.
        RuntimeError: the stage failed.
    """
    tmpdir = _check_outside_repo(Path(tmpdir))
    folder = tmpdir / "panoramas"
    rng = np.random.default_rng(0)
    column = np.linspace(230, 60, 9000, dtype=np.float32)[:, None]
    sky = Image.fromarray(np.repeat(column, 4, axis=1).astype(np.uint8)).resize((12000, 9000))
    sky = sky.convert("RGB")
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(
                folder / name / f"small{i}.png")  # fmt: skip
    first = folder / "a" / "pano0.png"
    sky.save(first)
    for i in range(1, n):
        shutil.copyfile(first, folder / ("a", "b")[i % 2] / f"pano{i}.png")
    from initbench.data.ingest import LARGE_SLOTS, default_workers

    rows = []
    runs = ([(default_workers(), LARGE_SLOTS)] if decoders is None
            else [(decoders, LARGE_SLOTS), (decoders, decoders)])  # fmt: skip
    for count, slots in runs:
        work = tmpdir / f"run_ours_{count}_{slots}"
        work.mkdir()
        command = (_ours(folder, work) if decoders is None
                   else _ours_decoders(folder, count, slots))  # fmt: skip
        run = run_measured(command, work / "log.txt")
        rows.append({"panoramas": n, "decoders": count, "large_slots": slots,
                     "ours_s": round(run["seconds"], 1),
                     "ours_peak_mb": round(run["peak_rss_mb"]),
                     "ours_max_process_mb": round(run["max_process_mb"])})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--rounds", type=int, default=None, help="default: 3, or 1 with --scale")
    parser.add_argument("--scale", type=int, metavar="N", help="N small JPEGs, ours only")
    parser.add_argument("--panorama", type=int, metavar="N",
                        help="N 12000x9000 PNG panoramas, ours only: the memory bound")  # fmt: skip
    parser.add_argument("--decoders", type=int, metavar="D",
                        help="with --panorama: D decoders, with and without the large-image "
                             "slots")  # fmt: skip
    parser.add_argument("--tmpdir", help="where to generate inputs (default: system temp)")
    parser.add_argument("--json", action="store_true", help="print rows as JSON, not a table")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)  # the measured loop
    parser.add_argument("--image-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        images = baseline_loop(args.baseline, args.image_size, args.channels)
        print(f"baseline: {images.shape}")
        return
    tmpdir = Path(tempfile.mkdtemp(prefix="initbench-ingest-bench-", dir=args.tmpdir))
    try:
        if args.panorama:
            rows = panorama_figures(tmpdir, args.panorama, args.decoders)
        elif args.scale:
            rows = scale_figures(tmpdir, args.scale, args.rounds or 1)
        else:
            rows = ingest_figures(tmpdir, tuple(args.sizes), args.rounds or 3)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(markdown(rows))
    if len(rows) > 1 and "images" in rows[0]:
        first, last = rows[0], rows[-1]
        growth = last["ours_s"] / first["ours_s"]
        print(
            f"\nours: {last['images'] / first['images']:g}x the images took {growth:.2f}x the time; "
            f"peak minus output {first['ours_peak_minus_output_mb']} -> "
            f"{last['ours_peak_minus_output_mb']} MB"
        )


if __name__ == "__main__":
    main()
