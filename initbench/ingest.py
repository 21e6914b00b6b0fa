"""Turn a folder of class folders into uint8 arrays, decoding every image exactly once.

Layout read::

    root/<class name>/**/<image>.<jpg|jpeg|png|bmp|gif|webp|tif|tiff>

Aspect policy: each image is EXIF-rotated upright, then resized so its shorter
side is ``image_size`` and center-cropped to ``image_size x image_size``
(``PIL.ImageOps.fit``, bilinear, antialiased). Nothing is stretched; the
edges of the longer side are cut.

Colour policy: transparent pixels are composited onto white; CMYK, palette and
1-bit images are converted; RGB becomes grayscale by ITU-R 601 luma when
``channels == 1``, and grayscale is repeated into three channels when
``channels == 3``.

Bit-depth policy, by Pillow mode (sample type):

- 8-bit (``L``, ``RGB``, ``P``, ...): as is.
- 16-bit integer grayscale (``I;16*``, e.g. TIFF and 16-bit PNG) and 32-bit integer
  grayscale (``I``): ``data.bit_depth`` bits hold the data, and ``0 .. 2**bit_depth - 1``
  maps linearly onto ``0 .. 255``. Many cameras write 10-, 12- or 14-bit data into 16-bit
  files; dividing those by 257 would leave 17 grey levels of 256 for 12-bit data. With
  ``auto`` (the default) the bit depth is the dataset's: the smallest of 8, 10, 12, 14
  and 16 that holds the largest pixel value of all such images, so every file of one
  camera is mapped alike and a dim frame stays dim. With a number, a file holding a
  larger value is skipped and reported. Values outside ``0 .. 65535`` skip the file.
- 32-bit float grayscale (``F``): ``0 .. 1`` maps onto ``0 .. 255``; values above 1 up
  to 255 are taken as 8-bit and above that up to 65535 as 16-bit; others skip the file.
- 16-bit RGB: Pillow itself reads these as 8-bit ``RGB``.

Decode policy: a JPEG at least twice the target in both sides is decoded at a
reduced DCT scale (Pillow's ``Image.draft``: 1/2, 1/4 or 1/8, the strongest
reduction that keeps both sides >= ``image_size``), then resized as above. Its
pixels are close to, not identical with, those of a full decode (libjpeg's scaled
inverse DCT averages where the bilinear filter would). Every other file, JPEGs
smaller than that included, is decoded at full size, so its pixels do not depend
on this policy.

Parallelism and memory: this process and ``workers - 1`` spawned worker processes
decode (the workers import numpy and Pillow, never torch), each holding one
full-resolution image at a time. Results come back in file order, a bounded number
of chunks ahead, and are copied into one preallocated ``(N, C, S, S)`` uint8 array
as they arrive, so the peak is that array, a constant per process and a few
hundred bytes per file for the paths. Above ``memmap_above`` bytes the array is
memory-mapped onto an unlinked temporary file, so the kernel can page it out.
:func:`initbench.data.save_dataset` streams each split from it to its ``.npy`` file
a few thousand rows at a time, without copying a split. Integer images of more than
8 bits add 2 bytes a pixel while the dataset's bit depth is found (below).

A file that cannot be decoded (empty, truncated, corrupt, not an image) is
skipped and reported with its reason. Hidden files and files with other
extensions are ignored and counted. A symlinked folder (a class folder or one
inside it) is not followed, as DVC does not follow it when it versions ``data/``:
it is ignored and counted too, so what ingest reads is what ``data.dvc`` versions.
A name that is not valid UTF-8 stops the scan with one line naming it.

Exact duplicates (identical decoded arrays) are found by hashing, here in the
main process, and each group of them is kept in one split. The format, the
split logic and :class:`Dataset` live in :mod:`initbench.data`, which this
module imports (never the reverse).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import tempfile
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
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
from initbench.params import BIT_DEPTHS

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Integer grayscale modes of more than 8 bits: mapped by ``data.bit_depth``.
_HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
#: Output arrays larger than this many bytes are memory-mapped (see :func:`allocate_images`).
MEMMAP_ABOVE = 512 * 2**20


@dataclass
class Scan:
    """What a folder holds: candidate image files (sorted), class names and what was ignored."""

    root: Path
    classes: list[str]
    files: list[tuple[str, int]]  # (path relative to root, class index)
    ignored: dict[str, list[str]] = field(default_factory=dict)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _check_utf8(root: Path, rel: str) -> None:
    """Raise if ``rel`` (a path under ``root``) is not valid UTF-8: its bytes could not be
    written to the manifest or metrics, and DVC cannot track such a file either.

    Raises:
        DataError: naming the file, its bytes shown as ``\\xNN`` escapes.
    """
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(rel).decode("utf-8", errors="backslashreplace")
        raise DataError(
            f"{root}/{shown}: the name is not valid UTF-8 (copied from an old share or zip?); "
            "rename it, DVC cannot track it either"
        ) from None


def scan_folder(root: str | os.PathLike[str]) -> Scan:
    """List class folders and their image files, in a stable order.

    Raises:
        DataError: if ``root`` is missing, has no image files or fewer than 2 class folders,
            or a name under it is not valid UTF-8 (found before any decoding).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}/: not found; put class folders of images there (see README)")
    ignored: dict[str, list[str]] = {"hidden": [], "non_image": [], "outside_class_folder": [],
                                     "symlinked_folder": []}  # fmt: skip
    class_dirs = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        _check_utf8(root, entry.name)
        if _is_hidden(entry.name):
            ignored["hidden"].append(entry.name)
        elif entry.is_symlink() and entry.is_dir():
            ignored["symlinked_folder"].append(entry.name)
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            ignored["outside_class_folder"].append(entry.name)
    classes = [d.name for d in class_dirs]
    files: list[tuple[str, int]] = []
    for label, class_dir in enumerate(class_dirs):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            rel_dir = Path(dirpath).relative_to(root)
            for name in [*dirnames, *filenames]:
                _check_utf8(root, (rel_dir / name).as_posix())
            for name in [d for d in dirnames if _is_hidden(d)]:
                ignored["hidden"].append((rel_dir / name).as_posix())
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            for name in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                ignored["symlinked_folder"].append((rel_dir / name).as_posix())
                dirnames.remove(name)
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


@dataclass(frozen=True)
class HighBitImage:
    """A decoded integer grayscale image of up to 16 bits, cropped and resized but not yet
    mapped to 8 bits: the bit depth of the whole dataset decides how (module docstring).

    ``values``: uint16 ``(image_size, image_size)``; ``max_value``: the file's largest
    pixel before resizing.
    """

    values: np.ndarray
    max_value: int


#: What decoding one file gives: the image, or ``None`` and why the file was skipped.
_Result = tuple[np.ndarray | HighBitImage | None, str | None]


def bit_depth_of(max_value: int) -> int:
    """The smallest of :data:`~initbench.params.BIT_DEPTHS` whose ``0 .. 2**d - 1`` holds
    ``max_value``. Raises: ValueError: ``max_value`` is above 65535."""
    for depth in BIT_DEPTHS:
        if max_value < 2**depth:
            return depth
    raise ValueError(f"pixel value {max_value} needs more than {BIT_DEPTHS[-1]} bits")


def to_uint8(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Map ``0 .. 2**bit_depth - 1`` linearly onto uint8 ``0 .. 255`` (rounded to nearest);
    larger values become 255. Same shape as ``values``."""
    scale = 255.0 / (2**bit_depth - 1)
    return np.clip(np.rint(values.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def _high_bit(image: Image.Image, image_size: int) -> HighBitImage:
    """Crop and resize an integer grayscale image in floating point, keeping its range."""
    values = np.asarray(image, dtype=np.int64)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > 65535:
        raise ValueError(f"integer pixels span {low}..{high}, outside 0..65535")
    fitted = ImageOps.fit(
        Image.fromarray(values.astype(np.float32)),
        (image_size, image_size),
        Image.Resampling.BILINEAR,
    )
    resized = np.clip(np.rint(np.asarray(fitted, dtype=np.float64)), 0, 65535)
    return HighBitImage(resized.astype(np.uint16), high)


def _to_8bit_mode(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode but the integer grayscale ones to L, LA, RGB or RGBA without
    losing range or transparency."""
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("float pixels include NaN or infinity")
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 65535:
            raise ValueError(f"float pixels span {low:g}..{high:g}, outside 0..65535")
        scale = 255.0 if high <= 1 else 1.0 if high <= 255 else 1 / 257
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
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


def _unswap_tiff_size(image: Image.Image) -> None:
    """Let Pillow 13's TIFF reader rotate a TIFF with EXIF orientation 5-8 upright.

    The reader swaps width and height when it opens such a file. An uncompressed TIFF of
    one strip or tile, opened from a path, is then memory-mapped with the swapped size,
    which scrambles its pixels (other TIFFs decode into a buffer of the stored size). Its
    own rotation after decoding is right once the image has the stored size. Giving it that
    size back is the whole fix (``tests/test_ingest.py`` checks every orientation, mode and
    layout against the upright image).
    """
    stored = getattr(image, "_tile_size", None)
    if image.format == "TIFF" and stored is not None and image.size != stored:
        image._size = stored


def _decode(
    path: str | os.PathLike[str], image_size: int, channels: int
) -> np.ndarray | HighBitImage:
    """Decode one file: uint8 ``(channels, image_size, image_size)``, or a
    :class:`HighBitImage` for integer grayscale of more than 8 bits."""
    if os.path.getsize(path) == 0:
        raise ValueError("empty file")
    with Image.open(path) as image:
        if image.format == "JPEG":
            # Reduced DCT scale only when both sides are >= 2x the target (module docstring).
            image.draft(None, (image_size, image_size))
        _unswap_tiff_size(image)
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in _HIGH_BIT_MODES:
            return _high_bit(image, image_size)
        image = _flatten_alpha(_to_8bit_mode(image))
        image = image.convert("L" if channels == 1 else "RGB")
        image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def decode_image(
    path: str | os.PathLike[str], image_size: int, channels: int, bit_depth: int | None = None
) -> np.ndarray:
    """Decode one file into a uint8 ``(channels, image_size, image_size)`` array.

    ``bit_depth`` maps integer grayscale images of more than 8 bits (module docstring);
    ``None`` takes this image's own (:func:`bit_depth_of` its largest value).

    Raises:
        OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError:
            the file is empty, truncated, corrupt or not an image, or its values do not
            fit ``bit_depth`` or the ranges of the module docstring.
    """
    decoded = _decode(path, image_size, channels)
    if isinstance(decoded, np.ndarray):
        return decoded
    depth = bit_depth_of(decoded.max_value) if bit_depth is None else bit_depth
    if decoded.max_value >= 2**depth:
        raise ValueError(_over_bit_depth(decoded.max_value, depth))
    return np.broadcast_to(
        to_uint8(decoded.values, depth), (channels, image_size, image_size)
    ).copy()


def _over_bit_depth(max_value: int, bit_depth: int) -> str:
    return (
        f"pixel values reach {max_value}, above data.bit_depth {bit_depth} "
        f"(0..{2**bit_depth - 1}); raise data.bit_depth or set it to auto"
    )


def _decode_or_reason(path: str, image_size: int, channels: int) -> _Result:
    """Worker: the array (or :class:`HighBitImage`), or ``None`` and why the file was skipped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read", reported below instead
            return _decode(path, image_size, channels), None
    except Image.DecompressionBombError as exc:
        return None, f"too large: {exc}"
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as exc:
        message = str(exc) or type(exc).__name__
        if "cannot identify image file" in message:
            message = "not an image (Pillow cannot identify it)"
        elif "truncated" in message.lower():
            message = "truncated: " + message
        return None, message


def default_workers() -> int:
    """Decoders to use (the main process and worker processes): the CPUs this process may
    run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _decode_chunk(paths: Sequence[str], image_size: int, channels: int) -> list[_Result]:
    """Worker: :func:`_decode_or_reason` of each path (one round trip for many files)."""
    return [_decode_or_reason(path, image_size, channels) for path in paths]


@dataclass
class _Chunk:
    """Files handed to the pool; ``results`` is set if the main process decoded them instead."""

    paths: list[str]
    future: Future
    results: list[_Result] | None = None


def iter_decoded(
    root: Path, relpaths: Sequence[str], image_size: int, channels: int, workers: int | None = None
) -> Iterator[_Result]:
    """Decode files with ``workers`` decoders, yielding ``(array, None)`` or ``(None, reason)``
    per file, in input order, as soon as each is ready.

    The decoders are this process and ``workers - 1`` spawned processes. Until a worker
    is up (spawning one and importing numpy and Pillow take about half a second), this
    process decodes alone, in order. Then files go out in chunks, and while the next
    chunk in order is not back, this process decodes the nearest chunk no worker has
    taken. At most ``4 * workers`` chunks are out or waiting to be consumed, so memory
    does not grow with the number of files. Arrays are uint8
    ``(channels, image_size, image_size)`` (see :func:`decode_image`), or a
    :class:`HighBitImage` for an integer grayscale file of more than 8 bits.
    """
    workers = workers or default_workers()
    with tqdm(total=len(relpaths), desc="decoding", unit="img", disable=None) as progress:
        if workers == 1 or len(relpaths) < 64:
            for rel in relpaths:
                yield _decode_or_reason(str(root / rel), image_size, channels)
                progress.update()
            return
        size = max(1, min(256, len(relpaths) // (workers * 8)))
        chunks = (
            [str(root / rel) for rel in relpaths[i : i + size]]
            for i in range(0, len(relpaths), size)
        )
        context = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
        pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=context)

        def submit(paths: list[str]) -> _Chunk:
            return _Chunk(paths, pool.submit(_decode_chunk, paths, image_size, channels))

        started = [pool.submit(os.getpid) for _ in range(workers - 1)]  # start them all now
        try:
            while not any(ping.done() for ping in started):
                paths = next(chunks, None)
                if paths is None:
                    break
                for result in _decode_chunk(paths, image_size, channels):
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
                        idle.results = _decode_chunk(idle.paths, image_size, channels)
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


def decode_all(
    root: Path, relpaths: Sequence[str], image_size: int, channels: int, workers: int | None = None
) -> list[_Result]:
    """:func:`iter_decoded` as a list (for small folders and tests; :func:`ingest` streams)."""
    return list(iter_decoded(root, relpaths, image_size, channels, workers))


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
    one split (see :func:`initbench.data.stratified_split`), so no val or test image
    has a copy in train. A picture filed under two classes keeps both labels.

    Raises:
        DataError: no images, fewer than 2 classes, or a class with too few usable
            (or too few distinct) images.
    """
    scan = scan_folder(root)
    relpaths = [rel for rel, _ in scan.files]
    shape = (len(relpaths), channels, image_size, image_size)
    images = allocate_images(shape, memmap_above, scratch_dir)
    kept_paths: list[str] = []
    kept_labels: list[int] = []
    skipped: list[dict[str, str]] = []
    waiting: dict[int, np.ndarray] = {}  # row -> uint16 pixels, for the dataset's bit depth
    high_bit_images, high_bit_max = 0, 0
    decoded = iter_decoded(scan.root, relpaths, image_size, channels, workers)
    for (rel, label), (array, reason) in zip(scan.files, decoded, strict=True):
        if isinstance(array, HighBitImage):
            if bit_depth != "auto" and array.max_value >= 2**bit_depth:
                array, reason = None, _over_bit_depth(array.max_value, bit_depth)
            else:
                high_bit_images += 1
                high_bit_max = max(high_bit_max, array.max_value)
                if bit_depth == "auto":
                    waiting[len(kept_paths)] = array.values
                    array = 0  # this row is written once every file is read
                else:
                    array = to_uint8(array.values, bit_depth)
        if array is None:
            skipped.append({"path": rel, "reason": str(reason)})
        else:
            images[len(kept_paths)] = array
            kept_paths.append(rel)
            kept_labels.append(label)
    depth = bit_depth_of(high_bit_max) if bit_depth == "auto" else bit_depth
    for row, values in waiting.items():
        images[row] = to_uint8(values, depth)
    images = images[: len(kept_paths)]  # a view: skipped files leave unused rows at the end
    labels = np.array(kept_labels, dtype=np.int64)
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
        paths=kept_paths,
        images=images,
        labels=labels,
        split=stratified_split(labels, val_fraction, test_fraction, split_seed, groups),
        groups=groups,
        skipped=skipped,
        ignored=scan.ignored,
        high_bit=_high_bit_report(high_bit_images, depth, high_bit_max, bit_depth),
    )


def _high_bit_report(images: int, depth: int, max_value: int, param: int | str) -> dict:
    if not images:
        return {}
    return {"images": images, "bit_depth": depth, "max_value": max_value, "bit_depth_param": param}


def summary(dataset: Dataset) -> dict:
    """The ``metrics/ingest.json`` content: counts per split and class, skipped and ignored files.

    Returns:
        ``{"images", "classes", "split": {split: n}, "per_class": [{"class", split: n}],
        "skipped": {"count", "files": [{"path", "reason"}]}, "ignored": {kind: n},
        "ignored_files": {kind: [path]}, "duplicates": {"groups", "images",
        "cross_class_groups"}}`` and, when the folder held integer images of more than 8
        bits, ``"high_bit_depth": {"images", "bit_depth", "max_value", "bit_depth_param"}``;
        where ``duplicates`` counts groups of more than one
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
    } | ({"high_bit_depth": dataset.high_bit} if dataset.high_bit else {})
