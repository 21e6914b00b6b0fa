"""The decoded dataset on disk (written by ``ingest``) and in memory (read by training stages).

On disk, under one folder::

    {train,val,test}_images.npy   uint8 (N, C, H, W)
    {train,val,test}_labels.npy   int64 (N,)
    classes.json                  class names, index = label
    meta.json                     image_size, channels, train-split mean/std per channel
    manifest.csv                  path,label,class,split for every decoded image
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from initbench.errors import DataError
from initbench.files import write_json, write_npy, write_text
from initbench.ingest import SPLITS, Dataset, channel_stats


def save_dataset(out_dir: str | os.PathLike[str], dataset: Dataset) -> dict:
    """Write ``dataset`` in the layout above; return the meta dict."""
    out_dir = Path(out_dir)
    for name in SPLITS:
        images, labels = dataset.subset(name)
        write_npy(out_dir / f"{name}_images.npy", images)
        write_npy(out_dir / f"{name}_labels.npy", labels)
    train_images, _ = dataset.subset("train")
    mean, std = channel_stats(train_images)
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

    def encoder_meta(self, channels: list[int]) -> dict:
        """What an init checkpoint for this data records (see ``initbench.transfer``)."""
        return {"in_channels": self.channels, "channels": list(channels),
                "image_size": self.image_size}  # fmt: skip


def load_dataset(folder: str | os.PathLike[str]) -> ArrayData:
    """Read what :func:`save_dataset` wrote.

    Raises:
        DataError: if a file is missing (the ingest stage has not run).
    """
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


def label_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a stratified ``fraction`` of ``labels`` (at least one per class), sorted.

    ``fraction == 1`` returns every index.
    """
    if fraction >= 1:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        count = max(1, round(fraction * len(members)))
        keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.sort(torch.cat(keep)).values
