"""The dataset on disk, and how training stages read it.

On disk, under one folder::

    {train,val,test}_images.npy   uint8 (N, C, H, W)
    {train,val,test}_labels.npy   int64 (N,)
    classes.json                  class names, index = label
    meta.json                     image_size, channels, train-split mean/std per channel
    manifest.csv                  path,label,class,split for every decoded image

Importing this module does not load torch: ingest imports it. Functions that return
tensors import torch when called.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from initbench.core.errors import DataError
from initbench.core.files import write_json, write_npy, write_text

if TYPE_CHECKING:
    import torch


SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Dataset:
    """Decoded images and their split, as ingest produces them.

    ``images`` uint8 ``(N, C, H, W)``; ``labels``, ``split`` and ``groups`` (duplicate
    group ids, see :func:`duplicate_groups`) int64 ``(N,)``; ``paths`` relative to the
    image folder; ``skipped`` ``[{"path", "reason"}]``; ``ignored`` ``{kind: [path]}``.
    """

    classes: list[str]
    paths: list[str]
    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    groups: np.ndarray
    skipped: list[dict[str, str]]
    ignored: dict[str, list[str]]
    #: integer images of more than 8 bits: ``{"images", "bit_depth", "max_value",
    #: "bit_depth_param"}`` (see :mod:`initbench.data.ingest`); empty when there were none
    high_bit: dict = field(default_factory=dict)
    #: kept pictures listed by their size: ``{"small" | "sliver": [{"path", "note"}]}``
    #: (:func:`initbench.data.decode.size_note`); empty when there were none
    flagged: dict = field(default_factory=dict)


#: Output arrays larger than this many bytes are memory-mapped (see :func:`allocate_images`).
MEMMAP_ABOVE = 512 * 2**20


def allocate_images(
    shape: tuple[int, int, int, int],
    memmap_above: int = MEMMAP_ABOVE,
    scratch_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """An uninitialised uint8 array of ``shape``; memory-mapped when over ``memmap_above`` bytes.

    The mapping is backed by an already-unlinked file in ``scratch_dir`` (default: the
    system temporary folder), which disappears with the last reference to the array.
    """
    nbytes = math.prod(shape)
    if nbytes == 0 or nbytes <= memmap_above:
        return np.empty(shape, dtype=np.uint8)
    with tempfile.TemporaryFile(dir=scratch_dir, prefix="initbench-ingest-") as backing:
        return np.memmap(backing, dtype=np.uint8, mode="w+", shape=shape)  # the map outlives the fd


def channel_stats(
    images: np.ndarray, chunk: int = 1024, rows: np.ndarray | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images (of ``images[rows]`` when
    given), on the 0..1 scale.

    Exact integer sums, ``chunk`` images at a time, so memory stays small for large datasets.
    """
    rows = np.arange(len(images)) if rows is None else np.asarray(rows, dtype=np.int64)
    total = np.zeros(images.shape[1], dtype=np.int64)
    total_sq = np.zeros(images.shape[1], dtype=np.int64)
    for start in range(0, len(rows), chunk):
        block = images[rows[start : start + chunk]].astype(np.int64)
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block * block).sum(axis=(0, 2, 3))
    pixels = max(len(rows) * images.shape[2] * images.shape[3], 1)
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 0.0))
    std = np.where(std > 0, std, 255.0)
    return [round(float(m) / 255, 6) for m in mean], [round(float(s) / 255, 6) for s in std]


def save_dataset(out_dir: str | os.PathLike[str], dataset: Dataset) -> dict:
    """Write ``dataset`` in the layout above; return the meta dict."""
    out_dir = Path(out_dir)
    for i, name in enumerate(SPLITS):
        rows = np.flatnonzero(dataset.split == i)  # streamed: no copy of a split is made
        write_npy(out_dir / f"{name}_images.npy", dataset.images, rows)
        write_npy(out_dir / f"{name}_labels.npy", dataset.labels, rows)
    mean, std = channel_stats(dataset.images, rows=np.flatnonzero(dataset.split == 0))
    meta = {
        "image_size": int(dataset.images.shape[-1]),
        "channels": int(dataset.images.shape[1]),
        "mean": mean,
        "std": std,
    }
    write_json(out_dir / "classes.json", dataset.classes)
    write_json(out_dir / "meta.json", meta)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "class", "split"])
    for path, label, split in zip(dataset.paths, dataset.labels, dataset.split, strict=True):
        writer.writerow([path, int(label), dataset.classes[label], SPLITS[split]])
    write_text(out_dir / "manifest.csv", buf.getvalue())
    return meta


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ArrayData:
    classes: list[str]
    image_size: int
    channels: int
    mean: list[float]
    std: list[float]
    splits: dict[str, Split]


def dataset_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files :func:`save_dataset` writes in ``folder``."""
    folder = Path(folder)
    arrays = [folder / f"{name}_{kind}.npy" for name in SPLITS for kind in ("images", "labels")]
    return [folder / "classes.json", folder / "meta.json", *arrays]


def check_dataset(folder: str | os.PathLike[str]) -> None:
    """Check that ``folder`` holds a dataset without reading it (before starting more
    processes that each would fail on it).

    Raises:
        DataError: as :func:`load_dataset`, naming the first missing file.
    """
    for path in dataset_files(folder):
        if not path.is_file():
            raise DataError(f"{path}: missing; run the ingest stage (`dvc repro`)")


def load_dataset(folder: str | os.PathLike[str]) -> ArrayData:
    """Read what :func:`save_dataset` wrote.

    Raises:
        DataError: if a file is missing (the ingest stage has not run).
    """
    import torch

    folder = Path(folder)
    try:
        classes = json.loads((folder / "classes.json").read_text())
        meta = json.loads((folder / "meta.json").read_text())
        splits = {
            name: Split(
                images=torch.from_numpy(np.load(folder / f"{name}_images.npy", allow_pickle=False)),
                labels=torch.from_numpy(np.load(folder / f"{name}_labels.npy", allow_pickle=False)),
            )
            for name in SPLITS
        }
    except FileNotFoundError as exc:
        raise DataError(f"{exc.filename}: missing; run the ingest stage (`dvc repro`)") from None
    return ArrayData(
        classes=classes,
        image_size=meta["image_size"],
        channels=meta["channels"],
        mean=meta["mean"],
        std=meta["std"],
        splits=splits,
    )
