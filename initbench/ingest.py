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

Exact duplicates (identical decoded arrays) are found by hashing, here in the
main process, and each group of them is kept in one split. The format, the
split logic and :class:`Dataset` live in :mod:`initbench.data`, which this
module imports (never the reverse).
"""

from __future__ import annotations

import functools
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

from initbench.data import (
    SPLITS,
    Dataset,
    duplicate_counts,
    duplicate_groups,
    group_labels,
    min_class_size,
    stratified_split,
)
from initbench.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
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


def ingest(
    root: str | os.PathLike[str],
    image_size: int,
    channels: int,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    workers: int | None = None,
) -> Dataset:
    """Scan, decode and split a class-folder tree. ``root`` is only read, never written.

    Exact duplicates (identical decoded pixels) are grouped and each group lands in
    one split (see :func:`initbench.data.stratified_split`), so no val or test image
    has a copy in train. A picture filed under two classes keeps both labels.

    Raises:
        DataError: no images, fewer than 2 classes, or a class with too few usable
            (or too few distinct) images.
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
    fractions = f"val_fraction={val_fraction:g}, test_fraction={test_fraction:g}"
    for label, count in enumerate(counts):
        if count < needed:
            n_skipped = sum(1 for s in skipped if s["path"].split("/", 1)[0] == scan.classes[label])
            detail = f" ({n_skipped} more skipped as unreadable)" if n_skipped else ""
            raise DataError(
                f"{scan.root / scan.classes[label]}/: {count} usable image(s){detail}; a class "
                f"needs at least {needed} for train/val/test splits of {fractions}. "
                "Add images or remove the folder"
            )
    if kept:
        images = np.stack([array for _, _, array in kept])
    else:  # unreachable: every class has >= 3 images here
        images = np.zeros((0, channels, image_size, image_size), dtype=np.uint8)
    groups = duplicate_groups(images)
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
    return Dataset(
        classes=scan.classes,
        paths=[rel for rel, _, _ in kept],
        images=images,
        labels=labels,
        split=stratified_split(labels, val_fraction, test_fraction, split_seed, groups),
        groups=groups,
        skipped=skipped,
        ignored=scan.ignored,
    )


def summary(dataset: Dataset) -> dict:
    """The ``metrics/ingest.json`` content: counts per split and class, skipped and ignored files.

    Returns:
        ``{"images", "classes", "split": {split: n}, "per_class": [{"class", split: n}],
        "skipped": {"count", "files": [{"path", "reason"}]}, "ignored": {kind: n},
        "ignored_files": {kind: [path]}, "duplicates": {"groups", "images",
        "cross_class_groups"}}``, where ``duplicates`` counts groups of more than one
        identical image, the images beyond the first of each group, and the groups
        whose images sit in more than one class folder.
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
        "duplicates": duplicate_counts(dataset.groups, dataset.labels),
    }
