"""Turn a folder of class folders into uint8 arrays, decoding every image exactly once.

Layout read::

    root/<class name>/**/<image>.<jpg|jpeg|png|bmp|gif|webp|tif|tiff>

Aspect policy: each image is EXIF-rotated upright, then resized so its shorter
side is ``image_size`` and center-cropped to ``image_size x image_size``
(``PIL.ImageOps.fit``, bilinear, antialiased). Nothing is stretched; the
edges of the longer side are cut.

Colour policy: transparent pixels are composited onto white; 16-bit images are
scaled to 8 bits; CMYK, palette and 1-bit images are converted; RGB becomes
grayscale by ITU-R 601 luma when ``channels == 1``, and grayscale is repeated
into three channels when ``channels == 3``.

A file that cannot be decoded (empty, truncated, corrupt, not an image) is
skipped and reported with its reason. Hidden files and files with other
extensions are ignored and counted.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from initbench.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


@dataclass
class Scan:
    """What a folder holds: candidate image files (sorted), class names and what was ignored."""

    root: Path
    classes: list[str]
    files: list[tuple[str, int]]  # (path relative to root, class index)
    ignored: dict[str, list[str]] = field(default_factory=dict)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def scan_folder(root: str | os.PathLike[str]) -> Scan:
    """List class folders and their image files, in a stable order.

    Raises:
        DataError: if ``root`` is missing, has no image files or fewer than 2 class folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}/: not found; put class folders of images there (see README)")
    ignored: dict[str, list[str]] = {"hidden": [], "non_image": [], "outside_class_folder": []}
    class_dirs = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _is_hidden(entry.name):
            ignored["hidden"].append(entry.name)
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            ignored["outside_class_folder"].append(entry.name)
    classes = [d.name for d in class_dirs]
    files: list[tuple[str, int]] = []
    for label, class_dir in enumerate(class_dirs):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            rel_dir = Path(dirpath).relative_to(root)
            for name in [d for d in dirnames if _is_hidden(d)]:
                ignored["hidden"].append((rel_dir / name).as_posix())
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            for name in sorted(filenames):
                rel = (rel_dir / name).as_posix()
                if _is_hidden(name):
                    ignored["hidden"].append(rel)
                elif Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    files.append((rel, label))
                else:
                    ignored["non_image"].append(rel)
    files.sort()
    ignored = {kind: sorted(paths) for kind, paths in ignored.items()}
    if not files:
        raise DataError(
            f"{root}/: no images found; expected {root}/<class name>/<image> with extensions "
            + ", ".join(sorted(IMAGE_EXTENSIONS))
        )
    if len(classes) < 2:
        raise DataError(
            f"{root}/: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "need at least 2 to classify"
        )
    return Scan(root=root, classes=classes, files=files, ignored=ignored)


def _to_8bit_mode(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L, LA, RGB or RGBA without losing range or transparency."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode in _SIXTEEN_BIT_MODES or values.max(initial=0) > 255:
            values = values / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if image.mode == "P" or "transparency" in image.info:
        return image.convert("RGBA")
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if image.mode == "PA":
        return image.convert("RGBA")
    return image.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV, RGBX, ...


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode not in ("LA", "RGBA"):
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def decode_image(path: str | os.PathLike[str], image_size: int, channels: int) -> np.ndarray:
    """Decode one file into a uint8 ``(channels, image_size, image_size)`` array.

    Raises:
        OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError:
            the file is empty, truncated, corrupt or not an image.
    """
    if os.path.getsize(path) == 0:
        raise ValueError("empty file")
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft(None, (image_size, image_size))  # decode at a reduced DCT scale: faster
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _flatten_alpha(_to_8bit_mode(image))
        image = image.convert("L" if channels == 1 else "RGB")
        image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def _decode_or_reason(
    path: str, image_size: int, channels: int
) -> tuple[np.ndarray | None, str | None]:
    """Worker: the array, or ``None`` and why the file was skipped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read", reported below instead
            return decode_image(path, image_size, channels), None
    except Image.DecompressionBombError as exc:
        return None, f"too large: {exc}"
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as exc:
        message = str(exc) or type(exc).__name__
        if "cannot identify image file" in message:
            message = "not an image (Pillow cannot identify it)"
        elif "truncated" in message.lower():
            message = "truncated: " + message
        return None, message


def decode_all(
    root: Path, relpaths: Sequence[str], image_size: int, channels: int, workers: int | None = None
) -> list[tuple[np.ndarray | None, str | None]]:
    """Decode files in parallel; results come back in input order, whatever ``workers`` is."""
    work = functools.partial(_decode_or_reason, image_size=image_size, channels=channels)
    paths = [str(root / rel) for rel in relpaths]
    workers = workers or min(os.cpu_count() or 1, 8)
    progress = functools.partial(tqdm, total=len(paths), desc="decoding", unit="img")
    if workers == 1 or len(paths) < 64:
        return list(progress(map(work, paths)))
    context = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        return list(progress(pool.map(work, paths, chunksize=chunk)))


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` counts for a class of ``n`` images; val and test get at least 1."""
    n_val = max(1, math.floor(n * val_fraction + 0.5))
    n_test = max(1, math.floor(n * test_fraction + 0.5))
    return n - n_val - n_test, n_val, n_test


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """The fewest images a class needs for at least one image in each split."""
    n = 3
    while split_sizes(n, val_fraction, test_fraction)[0] < 1:
        n += 1
    return n


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Assign each sample a split (0 train, 1 val, 2 test), class by class, from ``seed``.

    Every class is split in the same proportions, so class balance holds in
    each split. Assumes every class has at least :func:`min_class_size` samples.
    """
    rng = np.random.default_rng(seed)
    split = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train, n_val, _ = split_sizes(len(members), val_fraction, test_fraction)
        split[members[n_train : n_train + n_val]] = 1
        split[members[n_train + n_val :]] = 2
    return split


@dataclass
class Dataset:
    """Decoded images: ``images`` uint8 ``(N, C, H, W)``, ``labels``/``split`` int64 ``(N,)``."""

    classes: list[str]
    paths: list[str]
    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    skipped: list[dict[str, str]]
    ignored: dict[str, list[str]]

    def subset(self, split_name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == SPLITS.index(split_name)
        return self.images[mask], self.labels[mask]


def ingest(
    root: str | os.PathLike[str],
    image_size: int,
    channels: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    workers: int | None = None,
) -> Dataset:
    """Scan, decode and split a class-folder tree. ``root`` is only read, never written.

    Raises:
        DataError: no images, fewer than 2 classes, or a class with too few usable images.
    """
    scan = scan_folder(root)
    relpaths = [rel for rel, _ in scan.files]
    results = decode_all(scan.root, relpaths, image_size, channels, workers)
    kept, skipped = [], []
    for (rel, label), (array, reason) in zip(scan.files, results, strict=True):
        if array is None:
            skipped.append({"path": rel, "reason": str(reason)})
        else:
            kept.append((rel, label, array))
    labels = np.array([label for _, label, _ in kept], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(scan.classes))
    needed = min_class_size(val_fraction, test_fraction)
    for label, count in enumerate(counts):
        if count < needed:
            n_skipped = sum(1 for s in skipped if s["path"].split("/", 1)[0] == scan.classes[label])
            detail = f" ({n_skipped} more skipped as unreadable)" if n_skipped else ""
            raise DataError(
                f"{scan.root / scan.classes[label]}/: {count} usable image(s){detail}; a class "
                f"needs at least {needed} for train/val/test splits of "
                f"val_fraction={val_fraction:g}, test_fraction={test_fraction:g}. "
                "Add images or remove the folder"
            )
    if kept:
        images = np.stack([array for _, _, array in kept])
    else:  # unreachable: every class has >= 3 images here
        images = np.zeros((0, channels, image_size, image_size), dtype=np.uint8)
    return Dataset(
        classes=scan.classes,
        paths=[rel for rel, _, _ in kept],
        images=images,
        labels=labels,
        split=stratified_split(labels, val_fraction, test_fraction, seed),
        skipped=skipped,
        ignored=scan.ignored,
    )


def channel_stats(images: np.ndarray, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images, on the 0..1 scale.

    Exact integer sums, ``chunk`` images at a time, so memory stays small for large datasets.
    """
    total = np.zeros(images.shape[1], dtype=np.int64)
    total_sq = np.zeros(images.shape[1], dtype=np.int64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].astype(np.int64)
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block * block).sum(axis=(0, 2, 3))
    pixels = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 0.0))
    std = np.where(std > 0, std, 255.0)
    return [round(float(m) / 255, 6) for m in mean], [round(float(s) / 255, 6) for s in std]


def summary(dataset: Dataset) -> dict:
    """The ``metrics/ingest.json`` content: counts per split and class, skipped and ignored files.

    Returns:
        ``{"images", "classes", "split": {split: n}, "per_class": [{"class", split: n}],
        "skipped": {"count", "files": [{"path", "reason"}]}, "ignored": {kind: n},
        "ignored_files": {kind: [path]}}``
    """
    # A list, not a dict keyed by class: `dvc metrics show` tabulates only the scalars,
    # so the table stays readable with 10 or 100 classes.
    per_class = []
    for label, name in enumerate(dataset.classes):
        in_class = dataset.split[dataset.labels == label]
        per_class.append(
            {"class": name} | {s: int((in_class == i).sum()) for i, s in enumerate(SPLITS)}
        )
    return {
        "images": len(dataset.labels),
        "classes": len(dataset.classes),
        "split": {s: int((dataset.split == i).sum()) for i, s in enumerate(SPLITS)},
        "per_class": per_class,
        "skipped": {"count": len(dataset.skipped), "files": dataset.skipped},
        "ignored": {kind: len(paths) for kind, paths in dataset.ignored.items()},
        "ignored_files": dataset.ignored,
    }
