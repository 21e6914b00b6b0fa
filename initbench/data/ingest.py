"""Ingest: scan, decode in parallel and split a class-folder tree into one uint8 array.

What is read is :mod:`initbench.data.scan`'s, how each file is decoded
:mod:`initbench.data.decode`'s.

Parallelism and memory: this process and ``workers - 1`` spawned worker processes
decode (the workers import numpy and Pillow, never torch), each holding one
full-resolution image at a time. Results come back in file order, a bounded number
of chunks ahead, and are copied into one preallocated ``(N, C, S, S)`` uint8 array
as they arrive, so the peak is that array, a constant per process and a few
hundred bytes per file for the paths. Above ``memmap_above`` bytes the array is
memory-mapped onto an unlinked temporary file, so the kernel can page it out.
:func:`initbench.data.dataset.save_dataset` streams each split from it to its ``.npy`` file
a few thousand rows at a time, without copying a split. Integer images of more than
8 bits add 2 bytes a pixel while the dataset's bit depth is found (the bit-depth policy
of :mod:`initbench.data.decode`).

A file that cannot be decoded is skipped with its reason, and what the scan ignored is
counted: :mod:`initbench.data.report` turns both into the ingest report.

Exact duplicates (identical decoded arrays) are found by hashing, here in the
main process, and each group of them is kept in one split. The format and
:class:`~initbench.data.dataset.Dataset` live in :mod:`initbench.data.dataset`, the split
logic in :mod:`initbench.data.split`.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from initbench.core.errors import DataError
from initbench.data.dataset import MEMMAP_ABOVE, Dataset, allocate_images
from initbench.data.decode import (
    DecodeResult,
    HighBitImage,
    bit_depth_of,
    decode_chunk,
    decode_or_reason,
    over_bit_depth,
    set_large_slots,
    to_uint8,
)
from initbench.data.scan import Scan, class_files_note, scan_folder
from initbench.data.split import (
    duplicate_groups,
    group_labels,
    min_class_size,
    stratified_split,
)

#: Decoders that may hold a picture of more than LARGE_PIXELS at once (the memory policy of
#: :mod:`initbench.data.decode`): a 12000x9000 PNG peaks near 580 MB in its decoder.
LARGE_SLOTS = 2


def default_workers() -> int:
    """Decoders to use (the main process and worker processes): the CPUs this process may
    run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process while the block runs, so processes started in it
    ignore it for good (an ignored signal stays ignored across exec, and Python keeps it
    so). Ctrl-C then reaches only this process, which cancels the work; a worker still
    importing when it comes would otherwise print its own traceback. A Ctrl-C during the
    block itself (starting the processes: milliseconds) is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _slot_files(count: int) -> str:
    """A new temporary folder of ``count`` empty slot files for
    :func:`initbench.data.decode.set_large_slots`; the caller removes it."""
    folder = tempfile.mkdtemp(prefix="initbench-decode-slots-")
    for i in range(count):
        Path(folder, f"slot{i}").touch()
    return folder


@dataclass
class _Chunk:
    """Files handed to the pool; ``results`` is set if the main process decoded them instead."""

    paths: list[str]
    future: Future
    results: list[DecodeResult] | None = None


def iter_decoded(
    root: Path, relpaths: Sequence[str], image_size: int, channels: int, workers: int | None = None
) -> Iterator[DecodeResult]:
    """Decode files with ``workers`` decoders, yielding ``(array, None)`` or ``(None, reason)``
    per file, in input order, as soon as each is ready.

    The decoders are this process and ``workers - 1`` spawned processes. Until a worker
    is up (spawning one and importing numpy and Pillow take about half a second), this
    process decodes alone, in order. Then files go out in chunks, and while the next
    chunk in order is not back, this process decodes the nearest chunk no worker has
    taken. At most ``4 * workers`` chunks are out or waiting to be consumed, so memory
    does not grow with the number of files. Arrays are uint8
    ``(channels, image_size, image_size)`` (see :func:`~initbench.data.decode.decode_file`), or a
    :class:`HighBitImage` for an integer grayscale file of more than 8 bits.
    """
    workers = workers or default_workers()
    with tqdm(total=len(relpaths), desc="decoding", unit="img", disable=None) as progress:
        if workers == 1 or len(relpaths) < 64:
            for rel in relpaths:
                yield decode_or_reason(str(root / rel), image_size, channels)
                progress.update()
            return
        size = max(1, min(256, len(relpaths) // (workers * 8)))
        chunks = (
            [str(root / rel) for rel in relpaths[i : i + size]]
            for i in range(0, len(relpaths), size)
        )
        context = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
        slots = _slot_files(LARGE_SLOTS)  # see initbench.data.decode.LARGE_PIXELS
        pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=context,
                                   initializer=set_large_slots, initargs=(slots,))  # fmt: skip
        set_large_slots(slots)  # this process decodes too

        def submit(paths: list[str]) -> _Chunk:
            return _Chunk(paths, pool.submit(decode_chunk, paths, image_size, channels))

        with _sigint_ignored():  # the workers inherit it: Ctrl-C stops this process only
            started = [pool.submit(os.getpid) for _ in range(workers - 1)]  # start them all now
        try:
            while not any(ping.done() for ping in started):
                paths = next(chunks, None)
                if paths is None:
                    break
                for result in decode_chunk(paths, image_size, channels):
                    yield result
                    progress.update()
            pending = deque(submit(paths) for paths in itertools.islice(chunks, 4 * workers))
            while pending:
                head = pending[0]
                if head.results is None and not head.future.done():
                    # cancel() succeeds only for a chunk no worker has taken yet.
                    idle = next(
                        (c for c in pending if c.results is None and c.future.cancel()), None
                    )
                    if idle is not None:
                        idle.results = decode_chunk(idle.paths, image_size, channels)
                        continue
                pending.popleft()
                results = head.future.result() if head.results is None else head.results
                pending.extend(submit(paths) for paths in itertools.islice(chunks, 1))
                for result in results:
                    yield result
                    progress.update()
        finally:  # also when the consumer stops early: drop what has not started
            # Workers still starting up exit on their own; waiting for them gains nothing.
            pool.shutdown(wait=any(ping.done() for ping in started), cancel_futures=True)
            set_large_slots(None)
            shutil.rmtree(slots, ignore_errors=True)


def ingest(
    root: str | os.PathLike[str],
    image_size: int,
    channels: int,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    workers: int | None = None,
    memmap_above: int = MEMMAP_ABOVE,
    scratch_dir: str | os.PathLike[str] | None = None,
    bit_depth: int | str = "auto",
) -> Dataset:
    """Scan, decode and split a class-folder tree. ``root`` is only read, never written.

    Decoded images are written straight into one preallocated array as they arrive
    (see :func:`allocate_images` for ``memmap_above`` and ``scratch_dir``); no list
    of images is ever built. ``bit_depth`` (``data.bit_depth``) maps integer grayscale
    images of more than 8 bits; with ``"auto"`` their resized uint16 pixels (2 bytes a
    pixel of the output) wait until the last file is read, to take the dataset's bit depth.

    Exact duplicates (identical decoded pixels) are grouped and each group lands in
    one split (see :func:`initbench.data.split.stratified_split`), so no val or test image
    has a copy in train. A picture filed under two classes keeps both labels.

    Raises:
        DataError: no images, fewer than 2 classes, or a class with too few usable
            (or too few distinct) images.
    """
    scan = scan_folder(root)
    decoded = _decode_into(scan, image_size, channels, bit_depth, workers, memmap_above,
                           scratch_dir)  # fmt: skip
    labels = np.array(decoded.labels, dtype=np.int64)
    groups = duplicate_groups(decoded.images)
    _check_class_sizes(scan, labels, groups, decoded.skipped, val_fraction, test_fraction)
    return Dataset(
        classes=scan.classes,
        paths=decoded.paths,
        images=decoded.images,
        labels=labels,
        split=stratified_split(labels, val_fraction, test_fraction, split_seed, groups),
        groups=groups,
        skipped=decoded.skipped,
        ignored=scan.ignored,
        high_bit=decoded.high_bit,
        flagged=decoded.flagged,
    )


@dataclass
class _Decoded:
    """The files of a scan that decoded: their pixels (row ``i`` is ``paths[i]``), labels
    and the high-bit report; and the files skipped, with reasons."""

    images: np.ndarray
    paths: list[str]
    labels: list[int]
    skipped: list[dict[str, str]]
    high_bit: dict
    flagged: dict[str, list[dict[str, str]]]


def _decode_into(
    scan: Scan,
    image_size: int,
    channels: int,
    bit_depth: int | str,
    workers: int | None,
    memmap_above: int,
    scratch_dir: str | os.PathLike[str] | None,
) -> _Decoded:
    """Decode every file of ``scan`` straight into one preallocated array (see
    :func:`ingest`), mapping integer images of more than 8 bits by ``bit_depth``."""
    relpaths = [rel for rel, _ in scan.files]
    shape = (len(relpaths), channels, image_size, image_size)
    images = allocate_images(shape, memmap_above, scratch_dir)
    kept_paths: list[str] = []
    kept_labels: list[int] = []
    skipped: list[dict[str, str]] = []
    flagged: dict[str, list[dict[str, str]]] = {}  # kind -> kept pictures listed by size
    waiting: dict[int, np.ndarray] = {}  # row -> uint16 pixels, for the dataset's bit depth
    high_bit_images, high_bit_max = 0, 0
    decoded = iter_decoded(scan.root, relpaths, image_size, channels, workers)
    for (rel, label), (result, reason) in zip(scan.files, decoded, strict=True):
        row = result
        if isinstance(result, HighBitImage):
            if bit_depth != "auto" and result.max_value >= 2**bit_depth:
                row, reason = None, over_bit_depth(result.max_value, bit_depth)
            else:
                high_bit_images += 1
                high_bit_max = max(high_bit_max, result.max_value)
                if bit_depth == "auto":
                    waiting[len(kept_paths)] = result.values
                    row = 0  # this row is written once every file is read
                else:
                    row = to_uint8(result.values, bit_depth)
        if row is None:
            skipped.append({"path": rel, "reason": str(reason)})
            continue
        if reason:  # a kept picture's size note: "small: ..." or "sliver: ..."
            flagged.setdefault(reason.split(":", 1)[0], []).append({"path": rel, "note": reason})
        images[len(kept_paths)] = row
        kept_paths.append(rel)
        kept_labels.append(label)
    depth = bit_depth_of(high_bit_max) if bit_depth == "auto" else bit_depth
    for index, values in waiting.items():
        images[index] = to_uint8(values, depth)
    return _Decoded(
        images=images[: len(kept_paths)],  # a view: skipped files leave unused rows at the end
        paths=kept_paths,
        labels=kept_labels,
        skipped=skipped,
        high_bit=_high_bit_report(high_bit_images, depth, high_bit_max, bit_depth),
        flagged=flagged,
    )


def _check_class_sizes(
    scan: Scan,
    labels: np.ndarray,
    groups: np.ndarray,
    skipped: list[dict[str, str]],
    val_fraction: float,
    test_fraction: float,
) -> None:
    """Raise unless every class has enough usable, and enough distinct, images for a
    train/val/test split.

    Raises:
        DataError: naming the class folder, its counts and what to do.
    """
    counts = np.bincount(labels, minlength=len(scan.classes))
    needed = min_class_size(val_fraction, test_fraction)
    fractions = f"val_fraction={val_fraction:g}, test_fraction={test_fraction:g}"
    for label, count in enumerate(counts):
        if count < needed:
            n_skipped = sum(1 for s in skipped if s["path"].split("/", 1)[0] == scan.classes[label])
            detail = f" ({n_skipped} more skipped as unreadable)" if n_skipped else ""
            detail += class_files_note(scan, scan.classes[label])
            raise DataError(
                f"{scan.root / scan.classes[label]}/: {count} usable image(s){detail}; a class "
                f"needs at least {needed} for train/val/test splits of {fractions}. "
                "Add images or remove the folder"
            )
    distinct = np.bincount(group_labels(groups, labels), minlength=len(scan.classes))
    for label, count in enumerate(distinct):
        if count < needed:
            raise DataError(
                f"{scan.root / scan.classes[label]}/: {counts[label]} usable image(s) but only "
                f"{count} distinct once exact duplicates are grouped (a picture also filed "
                "under another class counts for the class of its first path); a class needs "
                f"at least {needed} distinct for train/val/test splits of {fractions}. "
                "Add images or remove the duplicates"
            )


def _high_bit_report(images: int, depth: int, max_value: int, param: int | str) -> dict:
    if not images:
        return {}
    return {"images": images, "bit_depth": depth, "max_value": max_value, "bit_depth_param": param}
