"""Decoding one image file into the dataset's pixels: what every decoder process runs.

Aspect policy: each image is EXIF-rotated upright, then resized so its shorter
side is ``image_size`` and center-cropped to ``image_size x image_size``
(``PIL.ImageOps.fit``, bilinear, antialiased). Nothing is stretched; the
edges of the longer side are cut. Pictures of at most 2 px a side are skipped; slivers
(shorter side under a quarter of the longer) and small pictures (upscaled more than 4x)
are kept and listed (:func:`size_note`).

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

Memory policy: a picture is transposed in place (an EXIF orientation never copies it),
and a picture of more than :data:`LARGE_PIXELS` decodes only while its decoder holds one
of a few slots shared by all decoders (:func:`set_large_slots`), so a folder of
panoramas does not hold one at full size in every decoder at once.

Decode policy: a JPEG at least twice the target in both sides is decoded at a
reduced DCT scale (Pillow's ``Image.draft``: 1/2, 1/4 or 1/8, the strongest
reduction that keeps both sides >= ``image_size``), then resized as above. Its
pixels are close to, not identical with, those of a full decode (libjpeg's scaled
inverse DCT averages where the bilinear filter would). Every other file, JPEGs
smaller than that included, is decoded at full size, so its pixels do not depend
on this policy.

A file that cannot be decoded (empty, truncated, corrupt, not an image) gives the
reason it is skipped instead of an image. This module imports numpy and Pillow only
(never torch, params or the rest of the library): spawned decode workers import it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: Bits of data a 16-bit (or 32-bit integer) grayscale image may hold: ``data.bit_depth``.
BIT_DEPTHS: tuple[int, ...] = (8, 10, 12, 14, 16)


#: Integer grayscale modes of more than 8 bits: mapped by ``data.bit_depth``.
_HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


@dataclass(frozen=True)
class HighBitImage:
    """A decoded integer grayscale image of up to 16 bits, cropped and resized but not yet
    mapped to 8 bits: the bit depth of the whole dataset decides how (module docstring).

    ``values``: uint16 ``(image_size, image_size)``; ``max_value``: the file's largest
    pixel before resizing.
    """

    values: np.ndarray
    max_value: int


#: What decoding one file gives: the image and a note on its size (:func:`size_note`, or
#: ``None``), or ``None`` and why the file was skipped.
DecodeResult = tuple[np.ndarray | HighBitImage | None, str | None]


def bit_depth_of(max_value: int) -> int:
    """The smallest of :data:`BIT_DEPTHS` whose ``0 .. 2**d - 1`` holds
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


#: Pictures whose shorter side is at most this many pixels are skipped: tracking pixels
#: and spacers, not pictures of anything.
DEGENERATE_PX = 2
#: A picture upscaled by more than this factor (shorter side under ``image_size / 4``) is
#: kept but listed as small: it holds far less detail than the others.
SMALL_UPSCALE = 4
#: A picture whose shorter side is under this share of its longer side is kept but listed
#: as a sliver: the center crop keeps less than that share of it.
SLIVER_RATIO = 0.25


#: A picture of more pixels than this (24 Mpixel: about 72 MB as 8-bit RGB, several times
#: that while it is decoded and converted) waits for one of the large-picture slots.
LARGE_PIXELS = 24_000_000
_slots_folder: str | None = None  # the decoders' shared slot files (set_large_slots), or None


def set_large_slots(folder: str | os.PathLike[str] | None) -> None:
    """Share the slot files in ``folder`` (``slot*``, made by the process that starts the
    decoders) among the decoders: each holds an exclusive lock on one of them while it
    decodes a picture of more than :data:`LARGE_PIXELS`, so however many decoders run,
    only that many large pictures are in memory at once. ``None``: no bound (one decoder).
    A path, not a lock object, so a decoder still starting when the others are done has
    nothing to attach to and fail on."""
    global _slots_folder
    _slots_folder = None if folder is None else str(folder)


def _take_slot(folder: str) -> int | None:
    """An open file descriptor holding an exclusive lock on a free slot file of ``folder``
    (waiting for one when all are taken); ``None`` when there are none to take, or no
    ``fcntl`` (not POSIX): then nothing bounds the decoders."""
    try:
        import fcntl
    except ImportError:
        return None
    paths = sorted(Path(folder).glob("slot*"))
    for path in paths:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            os.close(fd)
    if not paths:
        return None
    try:  # every slot is taken: wait for one
        fd = os.open(paths[os.getpid() % len(paths)], os.O_RDWR)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextlib.contextmanager
def _large_slot(size: tuple[int, int]) -> Iterator[None]:
    """Hold a large-picture slot while a picture of ``size`` (width, height) decodes."""
    fd = None
    if _slots_folder is not None and size[0] * size[1] > LARGE_PIXELS:
        fd = _take_slot(_slots_folder)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def size_note(width: int, height: int, image_size: int) -> str | None:
    """``"small: 5x7 px"`` or ``"sliver: 4000x10 px, the crop keeps 0.25%"`` for a kept
    picture of that size (oriented, as decoded) that the report lists, else ``None``.

    Raises:
        ValueError: a degenerate picture (:data:`DEGENERATE_PX`): the reason it is skipped.
    """
    short, long = min(width, height), max(width, height)
    if short <= DEGENERATE_PX:
        raise ValueError(f"degenerate: {width}x{height} px (a tracking pixel or a spacer?)")
    if short / long < SLIVER_RATIO:
        return f"sliver: {width}x{height} px, the center crop keeps {short / long:.2%} of it"
    if short * SMALL_UPSCALE < image_size:
        return f"small: {width}x{height} px, upscaled {image_size / short:.0f}x"
    return None


def decode_file(
    path: str | os.PathLike[str], image_size: int, channels: int, notes: list[str] | None = None
) -> np.ndarray | HighBitImage:
    """Decode one file: uint8 ``(channels, image_size, image_size)``, or a
    :class:`HighBitImage` for integer grayscale of more than 8 bits. A note on its size
    (:func:`size_note`) is appended to ``notes`` when given.

    Raises:
        ValueError: an empty file or a degenerate picture; and whatever Pillow raises."""
    if os.path.getsize(path) == 0:
        raise ValueError("empty file")
    with Image.open(path) as image, _large_slot(image.size):
        if image.format == "JPEG":
            # Reduced DCT scale only when both sides are >= 2x the target (module docstring).
            image.draft(None, (image_size, image_size))
        _unswap_tiff_size(image)
        image.load()
        # In place: without an orientation tag, a copy would double the peak memory of a
        # large image (a 12000x9000 PNG: 578 MB -> 1 GB a decoder).
        ImageOps.exif_transpose(image, in_place=True)
        note = size_note(*image.size, image_size)
        if note is not None and notes is not None:
            notes.append(note)
        if image.mode in _HIGH_BIT_MODES:
            return _high_bit(image, image_size)
        image = _flatten_alpha(_to_8bit_mode(image))
        image = image.convert("L" if channels == 1 else "RGB")
        image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def over_bit_depth(max_value: int, bit_depth: int) -> str:
    return (
        f"pixel values reach {max_value}, above data.bit_depth {bit_depth} "
        f"(0..{2**bit_depth - 1}); raise data.bit_depth or set it to auto"
    )


def _unreadable_kind(path: str) -> str:
    """Why Pillow could not identify ``path``: a HEIC/HEIF container (an ISO-BMFF ``ftyp``
    box, as iPhones write, whatever the file's extension) says so; else not an image."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", errors="replace").strip()
        return (f"a HEIC/HEIF file (ISO-BMFF brand {brand!r}), which the pinned Pillow does not "
                "read: convert it to JPEG or PNG")  # fmt: skip
    return "not an image (Pillow cannot identify it)"


def decode_or_reason(path: str, image_size: int, channels: int) -> DecodeResult:
    """Worker: the array (or :class:`HighBitImage`) with a note on its size, or ``None``
    and why the file was skipped."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read", reported below instead
            return decode_file(path, image_size, channels, notes), (notes[0] if notes else None)
    except Image.DecompressionBombError as exc:
        return None, f"too large: {exc}"
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as exc:
        message = str(exc) or type(exc).__name__
        if "cannot identify image file" in message:
            message = _unreadable_kind(path)
        elif "truncated" in message.lower():
            message = "truncated: " + message
        return None, message


def decode_chunk(paths: Sequence[str], image_size: int, channels: int) -> list[DecodeResult]:
    """Worker: :func:`decode_or_reason` of each path (one round trip for many files)."""
    return [decode_or_reason(path, image_size, channels) for path in paths]
