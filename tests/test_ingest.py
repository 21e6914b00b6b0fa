"""Tests of initbench.data.ingest on tiny image folders generated under tmp_path."""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from decoding import decode_all, decode_image
from PIL import Image, JpegImagePlugin

from initbench.core.errors import DataError
from initbench.data import dataset, decode, ingest, report, scan, split

REPO = Path(__file__).resolve().parents[1]
VAL, TEST = 0.1, 0.2  # the repo's params.yaml values; min_class_size is 3


# --------------------------------------------------------------------------- helpers


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _noise(seed: int, size: int = 12, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _make_class(root: Path, name: str, n: int, start_seed: int = 0, ext: str = ".png") -> list[str]:
    """``n`` distinct noise images in ``root/name``; returns their paths relative to root."""
    rels = []
    for i in range(n):
        rel = f"{name}/img{i:03d}{ext}"
        _save(root / rel, _noise(start_seed + i))
        rels.append(rel)
    return rels


def _ingest(root: Path, **kwargs) -> dataset.Dataset:
    args = {
        "image_size": 8,
        "channels": 1,
        "val_fraction": VAL,
        "test_fraction": TEST,
        "split_seed": 0,
        "workers": 1,
    }
    args.update(kwargs)
    return ingest.ingest(root, **args)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    _noise(7, size=32).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _per_class(summ: dict) -> dict[str, dict[str, int]]:
    """``summary()["per_class"]`` (a list of ``{"class", train, val, test}``) keyed by class."""
    rows = summ["per_class"]
    assert isinstance(rows, list)
    assert all(set(row) == {"class", *dataset.SPLITS} for row in rows)
    return {row["class"]: {s: row[s] for s in dataset.SPLITS} for row in rows}


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under root (files and folders, hidden included) with hash, size, mtime."""
    snap = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        rel = path.relative_to(root).as_posix()
        if path.is_file():
            snap[rel] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                stat.st_size,
                stat.st_mtime_ns,
            )
        else:
            snap[rel] = ("dir", 0, stat.st_mtime_ns)
    return snap


# --------------------------------------------------------------------------- extensions


EXTENSIONS = (".jpg", ".JPEG", ".png", ".PNG", ".bmp", ".gif", ".webp", ".tif", ".TIFF")


def test_every_accepted_extension_in_any_case_is_decoded(tmp_path):
    for i, ext in enumerate(EXTENSIONS):
        _save(tmp_path / "a" / f"f{i}{ext}", _noise(i))
    _make_class(tmp_path, "b", 3, start_seed=100)  # not copies of a's pictures
    ds = _ingest(tmp_path, channels=3)
    assert ds.skipped == []
    kept = sorted(Path(p).suffix for p in ds.paths if p.startswith("a/"))
    assert kept == sorted(EXTENSIONS)
    assert ds.images.shape == (len(EXTENSIONS) + 3, 3, 8, 8)
    assert ds.images.dtype == np.uint8


# --------------------------------------------------------------------------- image modes

# Each maker writes a uniform 16x16 image and returns the path; the expected decoded
# value is (gray, (r, g, b)). JPEG cases get a small tolerance.


def _uniform(mode: str, value) -> Image.Image:
    return Image.new(mode, (16, 16), value)


def _palette(path: Path) -> Path:
    image = _uniform("RGB", (0, 255, 0)).quantize(colors=4)
    assert image.mode == "P"
    return _save(path.with_suffix(".png"), image)


def _sixteen_bit(path: Path) -> Path:
    image = Image.fromarray(np.full((16, 16), 32896, dtype=np.uint16))  # 128 * 257
    path = _save(path.with_suffix(".png"), image)
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I"), check.mode
    return path


MODE_CASES: dict[str, tuple[Callable[[Path], Path], int, tuple[int, int, int], int]] = {
    "L": (lambda p: _save(p.with_suffix(".png"), _uniform("L", 100)), 100, (100, 100, 100), 0),
    "RGB": (
        lambda p: _save(p.with_suffix(".png"), _uniform("RGB", (255, 0, 0))),
        76,
        (255, 0, 0),
        1,
    ),
    "RGBA": (
        lambda p: _save(p.with_suffix(".png"), _uniform("RGBA", (0, 0, 255, 255))),
        29,
        (0, 0, 255),
        1,
    ),
    "LA": (lambda p: _save(p.with_suffix(".png"), _uniform("LA", (50, 255))), 50, (50, 50, 50), 0),
    "P": (_palette, 150, (0, 255, 0), 1),
    "CMYK-jpeg": (
        lambda p: _save(p.with_suffix(".jpg"), _uniform("CMYK", (0, 0, 0, 0)), quality=95),
        255,
        (255, 255, 255),
        3,
    ),
    "1-bit": (lambda p: _save(p.with_suffix(".png"), _uniform("1", 1)), 255, (255, 255, 255), 0),
    "I;16": (_sixteen_bit, 128, (128, 128, 128), 1),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("case", list(MODE_CASES))
def test_each_mode_decodes_to_the_right_shape_and_value(tmp_path, case, channels):
    make, gray, rgb, tol = MODE_CASES[case]
    path = make(tmp_path / "img")
    array = decode_image(path, 8, channels)
    assert array.shape == (channels, 8, 8)
    assert array.dtype == np.uint8
    expected = [gray] if channels == 1 else list(rgb)
    for c, value in enumerate(expected):
        assert np.abs(array[c].astype(int) - value).max() <= tol, (case, c, array[c])


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    array = decode_image(_sixteen_bit(tmp_path / "img"), 8, 1)
    assert abs(int(array.mean()) - 128) <= 1  # clipping would give 255


def test_sixteen_bit_full_range_maps_to_full_8bit_range(tmp_path):
    values = np.zeros((16, 16), dtype=np.uint16)
    values[:, 8:] = 65535
    path = _save(tmp_path / "ramp.png", Image.fromarray(values))
    array = decode_image(path, 16, 1)[0]
    assert array[:, 0].tolist() == [0] * 16
    assert array[:, -1].tolist() == [255] * 16


# --------------------------------------------------------------------------- bit depths
# Field case (cases/twelve_bit_tiffs.py): 16-bit TIFFs holding 12-bit data, as many
# scientific cameras write them, decoded to 0..16 (17 grey levels) when divided by 257.


def _tiff16(path: Path, values: np.ndarray) -> Path:
    path = _save(path, Image.fromarray(values.astype(np.uint16)))
    with Image.open(path) as check:
        assert check.mode == "I;16", check.mode
    return path


def _ramp(top: int, size: int = 64) -> np.ndarray:
    return np.rint(np.tile(np.linspace(0, 1, size), (size, 1)) * top)


def test_twelve_bit_data_in_sixteen_bit_files_fills_the_eight_bit_range(tmp_path):
    array = decode_image(_tiff16(tmp_path / "r.tif", _ramp(4095, 256)), 256, 1)[0]
    assert (array.min(), array.max()) == (0, 255)
    assert len(np.unique(array)) == 256  # dividing by 257 gives 17


@pytest.mark.parametrize(("top", "depth"), [(255, 8), (1023, 10), (4095, 12), (16383, 14),
                                            (16384, 16), (65535, 16)])  # fmt: skip
def test_bit_depth_of_is_the_smallest_standard_depth_holding_the_value(top, depth):
    assert decode.bit_depth_of(top) == depth
    with pytest.raises(ValueError, match="65536"):
        decode.bit_depth_of(65536)


def test_a_folder_takes_one_bit_depth_so_a_dim_frame_stays_dim(tmp_path):
    """Per-file scaling would stretch a dim 12-bit frame (max 1000) to 255."""
    rng = np.random.default_rng(0)
    for cls, top in (("bright", 4095), ("dim", 1000)):
        for i in range(4):
            noise = rng.integers(0, 40, (64, 64))
            _tiff16(tmp_path / cls / f"{i}.tif", np.minimum(_ramp(top) + noise * (i + 1), top))
    ds = _ingest(tmp_path, image_size=16)
    assert ds.high_bit == {"images": 8, "bit_depth": 12, "max_value": 4095,
                           "bit_depth_param": "auto"}  # fmt: skip
    dim = ds.images[ds.labels == ds.classes.index("dim")]
    assert 55 <= dim.max() <= 65  # 1000 * 255 / 4095 = 62, not 255
    assert report.summary(ds)["high_bit_depth"]["bit_depth"] == 12


def test_a_given_bit_depth_maps_every_file_and_skips_one_above_it(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for i in range(4):
            _tiff16(tmp_path / cls / f"{i}.tif", rng.integers(0, 1024, (20, 20)))
    _tiff16(tmp_path / "a" / "hot.tif", np.full((20, 20), 5000))
    ds = _ingest(tmp_path, image_size=8, bit_depth=12)
    assert ds.high_bit["bit_depth"] == 12 and ds.high_bit["images"] == 8
    assert ds.images.max() <= round(1023 * 255 / 4095)
    assert [(s["path"], "data.bit_depth 12" in s["reason"]) for s in ds.skipped] == [
        ("a/hot.tif", True)
    ]
    with pytest.raises(ValueError, match=r"above data\.bit_depth 10"):
        decode_image(tmp_path / "a" / "hot.tif", 8, 1, bit_depth=10)


def test_eight_bit_folders_report_no_high_bit_depth(tmp_path):
    _make_class(tmp_path, "a", 4)
    _make_class(tmp_path, "b", 4, start_seed=10)
    ds = _ingest(tmp_path)
    assert ds.high_bit == {} and "high_bit_depth" not in report.summary(ds)


@pytest.mark.parametrize(("values", "expected"), [(0.5, 128), (1.0, 255), (200.0, 200),
                                                  (32896.0, 128)])  # fmt: skip
def test_float_images_map_by_their_range(tmp_path, values, expected):
    path = _save(tmp_path / "f.tif", Image.fromarray(np.full((8, 8), values, np.float32)))
    assert decode_image(path, 8, 1).max() == expected


def test_float_or_integer_values_outside_sixteen_bits_skip_the_file_with_the_range(tmp_path):
    path = _save(tmp_path / "f.tif", Image.fromarray(np.full((8, 8), -3, np.float32)))
    with pytest.raises(ValueError, match=r"float pixels span -3\.\.-3"):
        decode_image(path, 8, 1)
    values = np.full((8, 8), 0.5, np.float32)
    values[0, 0] = np.nan
    path = _save(tmp_path / "n.tif", Image.fromarray(values))
    with pytest.raises(ValueError, match="float pixels include NaN or infinity"):
        decode_image(path, 8, 1)
    path = _save(tmp_path / "i.tif", Image.fromarray(np.full((8, 8), 70000, np.int32)))
    with pytest.raises(ValueError, match=r"integer pixels span 70000\.\.70000"):
        decode_image(path, 8, 1)


def _half_transparent(mode: str) -> Image.Image:
    """Left half fully transparent (black underneath), right half opaque black."""
    if mode == "RGBA":
        image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
        image.paste((0, 0, 0, 255), (8, 0, 16, 16))
    elif mode == "LA":
        image = Image.new("LA", (16, 16), (0, 0))
        image.paste((0, 255), (8, 0, 16, 16))
    else:  # P with transparency: index 0 transparent black, index 1 opaque black
        image = Image.new("P", (16, 16), 0)
        image.putpalette([0, 0, 0, 0, 0, 0] + [0, 0, 0] * 254)
        image.paste(1, (8, 0, 16, 16))
    return image


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("mode", "suffix", "save_kwargs"),
    [
        ("RGBA", ".png", {}),
        ("LA", ".png", {}),
        ("P", ".png", {"transparency": 0}),
        ("P", ".gif", {"transparency": 0}),
    ],
)
def test_transparent_pixels_become_white(tmp_path, mode, suffix, save_kwargs, channels):
    path = _save(tmp_path / f"img{suffix}", _half_transparent(mode), **save_kwargs)
    array = decode_image(path, 16, channels)
    assert array.shape == (channels, 16, 16)
    assert (array[:, :, :4] == 255).all()  # transparent area: white
    assert (array[:, :, -4:] == 0).all()  # opaque black stays black


# --------------------------------------------------------------------------- EXIF orientation


def _half_black_jpeg(path: Path, orientation: int | None) -> Path:
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (20, 0, 40, 20))  # left half black, right half white
    kwargs = {"quality": 95}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    return _save(path, image, **kwargs)


def test_exif_orientation_is_applied(tmp_path):
    array = decode_image(_half_black_jpeg(tmp_path / "r.jpg", 6), 8, 1)[0].astype(float)
    top, bottom = array[:2].mean(), array[-2:].mean()
    assert top < 60 and bottom > 195, array  # left half (black) rotated to the top


def test_without_exif_tag_top_and_bottom_match(tmp_path):
    array = decode_image(_half_black_jpeg(tmp_path / "n.jpg", None), 8, 1)[0].astype(float)
    assert abs(array[:2].mean() - array[-2:].mean()) < 10, array
    assert array[:, 0].mean() < 60 and array[:, -1].mean() > 195  # still left dark, right light


_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the transpose that makes the stored image upright (EXIF 2.3, 4.6.4)


def _asymmetric(mode: str) -> Image.Image:
    values = np.random.default_rng(0).integers(0, 256, (8, 12, 3))  # 12 wide, 8 high
    if mode == "RGB":
        return Image.fromarray(values.astype(np.uint8))
    if mode == "RGBA":
        alpha = np.where(values[:, :, :1] > 128, 255, 0)  # opaque or clear: composited on white
        return Image.fromarray(np.concatenate([values, alpha], axis=2).astype(np.uint8))
    if mode == "P":
        return Image.fromarray(values.astype(np.uint8)).quantize(16)
    if mode == "L":
        return Image.fromarray(values[:, :, 0].astype(np.uint8))
    return Image.fromarray((values[:, :, 0] * 257).astype(np.uint16))  # I;16


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".tif", {}),
        (".tif", {"compression": "tiff_lzw"}),
        (".tif", {"rows_per_strip": 1}),
        (".png", {}),
    ],
)
def test_every_exif_orientation_decodes_upright(tmp_path, orientation, mode, suffix, options):
    """Pillow 13 scrambled uncompressed one-strip TIFFs with orientation 5-8; the decoded
    image must equal the upright image saved without a tag, for every orientation."""
    image = _asymmetric(mode)
    upright = image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image
    reference = _save(tmp_path / f"upright{suffix}", upright)
    tagged = tmp_path / f"tagged{suffix}"
    if suffix == ".tif":
        info = {274: orientation} | ({278: 1} if options.get("rows_per_strip") else {})
        compression = {"compression": options["compression"]} if "compression" in options else {}
        image.save(tagged, tiffinfo=info, **compression)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(tagged, exif=exif)
    with Image.open(tagged) as check:
        assert check.getexif().get(0x0112) == orientation  # the tag was written
    for channels in (1, 3):
        got = decode_image(tagged, 8, channels, bit_depth=16 if mode == "I;16" else None)
        want = decode_image(reference, 8, channels, bit_depth=16 if mode == "I;16" else None)
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- bad files


def test_bad_files_are_skipped_with_reason_and_valid_ones_kept(tmp_path):
    good_a = _make_class(tmp_path, "a", 3)
    good_b = _make_class(tmp_path, "b", 3, start_seed=100)
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    jpeg = _jpeg_bytes()
    (tmp_path / "a" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "a" / "corrupt.png").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "b" / "signature_then_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 200)
    (tmp_path / "b" / "text.jpg").write_text("this is not a jpeg\n")

    ds = _ingest(tmp_path)
    reasons = {s["path"]: s["reason"] for s in ds.skipped}
    assert set(reasons) == {
        "a/empty.png",
        "a/truncated.jpg",
        "a/corrupt.png",
        "b/signature_then_garbage.png",
        "b/text.jpg",
    }
    assert all(reason.strip() for reason in reasons.values())
    assert "empty" in reasons["a/empty.png"]
    assert "truncated" in reasons["a/truncated.jpg"].lower()
    assert "not an image" in reasons["b/text.jpg"]
    assert "not an image" in reasons["a/corrupt.png"]
    assert sorted(ds.paths) == sorted(good_a + good_b)
    assert np.bincount(ds.labels).tolist() == [3, 3]
    assert report.summary(ds)["skipped"]["count"] == 5


# --------------------------------------------------------------------------- ignored files


def test_hidden_non_image_and_outside_files_are_ignored_and_counted(tmp_path):
    good = _make_class(tmp_path, "a", 3) + _make_class(tmp_path, "b", 3, start_seed=50)
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    _save(tmp_path / ".hidden_dir" / "x.png", _noise(1))
    _save(tmp_path / "stray.png", _noise(2))
    (tmp_path / "README.md").write_text("hello\n")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "a" / "._foo.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    _save(tmp_path / "a" / ".cache" / "y.png", _noise(3))
    (tmp_path / "b" / "notes.txt").write_text("notes\n")

    ds = _ingest(tmp_path)
    assert sorted(ds.paths) == sorted(good)
    assert ds.skipped == []
    assert ds.classes == ["a", "b"]
    assert sorted(ds.ignored["hidden"]) == sorted(
        [".DS_Store", ".hidden_dir", "a/.DS_Store", "a/._foo.jpg", "a/.cache"]
    )
    assert ds.ignored["non_image"] == ["b/notes.txt"]
    assert sorted(ds.ignored["outside_class_folder"]) == ["README.md", "stray.png"]
    assert report.summary(ds)["ignored"] == {"hidden": 5, "non_image": 1, "outside_class_folder": 2,
                                             "symlinked_folder": 0}  # fmt: skip


def test_nested_subfolders_belong_to_their_class(tmp_path):
    _make_class(tmp_path, "a", 2)
    _save(tmp_path / "a" / "sub" / "deeper" / "n1.png", _noise(10))
    _save(tmp_path / "a" / "sub" / "n2.png", _noise(11))
    _make_class(tmp_path, "b", 3, start_seed=20)
    ds = _ingest(tmp_path)
    label = dict(zip(ds.paths, ds.labels.tolist(), strict=True))
    assert label["a/sub/deeper/n1.png"] == ds.classes.index("a")
    assert label["a/sub/n2.png"] == ds.classes.index("a")
    assert ds.classes == ["a", "b"]  # the subfolder is not a class
    assert np.bincount(ds.labels).tolist() == [4, 3]


# --------------------------------------------------------------------------- fatal cases


def test_missing_root_is_a_data_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="not found") as info:
        _ingest(missing)
    assert str(missing) in str(info.value)


def test_empty_root_is_a_data_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no images") as info:
        _ingest(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_one_class_folder_is_a_data_error(tmp_path):
    _make_class(tmp_path, "only", 5)
    with pytest.raises(DataError, match="at least 2") as info:
        _ingest(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "only" in str(info.value)


def test_class_with_too_few_images_is_a_data_error(tmp_path):
    _make_class(tmp_path, "a", 5)
    _make_class(tmp_path, "small", 2, start_seed=50)
    with pytest.raises(DataError) as info:
        _ingest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "small") in message
    assert "2 usable" in message and "at least 3" in message
    assert "\n" not in message


def test_class_of_only_corrupt_images_is_a_data_error(tmp_path):
    _make_class(tmp_path, "a", 5)
    (tmp_path / "broken").mkdir()
    for i in range(4):
        (tmp_path / "broken" / f"b{i}.jpg").write_text("not a jpeg")
    with pytest.raises(DataError) as info:
        _ingest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "broken") in message
    assert "0 usable" in message and "4 more skipped" in message


def test_minimum_class_size_is_accepted(tmp_path):
    _make_class(tmp_path, "a", 3)
    _make_class(tmp_path, "b", 3, start_seed=10)
    ds = _ingest(tmp_path)
    assert _per_class(report.summary(ds))["a"] == {"train": 1, "val": 1, "test": 1}


# --------------------------------------------------------------------------- split


COUNTS = {"a": 10, "b": 17, "c": 5}


@pytest.fixture(scope="module")
def split_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("split")
    for k, (name, n) in enumerate(COUNTS.items()):
        _make_class(root, name, n, start_seed=100 * k)
    return root


def test_split_is_stratified(split_root):
    ds = _ingest(split_root)
    summ = report.summary(ds)
    for name, n in COUNTS.items():
        label = ds.classes.index(name)
        got = tuple(int(((ds.labels == label) & (ds.split == i)).sum()) for i in range(3))
        assert got == split.split_sizes(n, VAL, TEST)
        assert tuple(_per_class(summ)[name][s] for s in dataset.SPLITS) == got


def test_split_depends_only_on_split_seed(split_root):
    first = _ingest(split_root, split_seed=0)
    again = _ingest(split_root, split_seed=0)
    other = _ingest(split_root, split_seed=1)
    assert first.paths == again.paths == other.paths
    np.testing.assert_array_equal(first.split, again.split)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.split, other.split)
    # a different seed still gives the same per-class counts
    for label in range(len(COUNTS)):
        assert np.bincount(first.split[first.labels == label], minlength=3).tolist() == (
            np.bincount(other.split[other.labels == label], minlength=3).tolist()
        )


# Drawn by the code before duplicate groups (commit 6c7c53f) for split_root's labels
# (a: 10, b: 17, c: 5 images): data without duplicates must keep exactly this split.
SPLIT_BEFORE_DUPLICATE_GROUPS = {
    0: "12000000200000020200000112021000",
    1: "00020020010002200000201010000102",
    7: "00001200020100002001000200200021",
}


@pytest.mark.parametrize("split_seed", list(SPLIT_BEFORE_DUPLICATE_GROUPS))
def test_without_duplicates_the_split_is_unchanged(split_root, split_seed):
    ds = _ingest(split_root, split_seed=split_seed)
    assert ds.groups.tolist() == list(range(len(ds.paths)))
    assert "".join(map(str, ds.split.tolist())) == SPLIT_BEFORE_DUPLICATE_GROUPS[split_seed]
    per_sample = split.stratified_split(ds.labels, VAL, TEST, split_seed)
    assert ds.split.tobytes() == per_sample.tobytes()
    assert report.summary(ds)["duplicates"] == {"groups": 0, "images": 0, "cross_class_groups": 0}


def test_splits_are_disjoint_and_cover_all_kept_images(split_root):
    ds = _ingest(split_root)
    assert set(np.unique(ds.split).tolist()) == {0, 1, 2}
    parts = [
        {p for p, s in zip(ds.paths, ds.split.tolist(), strict=True) if s == i} for i in range(3)
    ]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    on_disk = {p.relative_to(split_root).as_posix() for p in split_root.rglob("*.png")}
    assert parts[0] | parts[1] | parts[2] == on_disk == set(ds.paths)
    assert len(ds.paths) == len(set(ds.paths)) == sum(COUNTS.values())
    sizes = [int((ds.split == i).sum()) for i in range(len(dataset.SPLITS))]
    assert sizes == [len(p) for p in parts]


# --------------------------------------------------------------------------- read-only input


def test_ingest_does_not_modify_the_input_folder(tmp_path):
    root = tmp_path / "data"
    _make_class(root, "a", 4)
    _make_class(root, "b", 4, start_seed=9, ext=".jpg")
    (root / "a" / "broken.png").write_bytes(b"junk")
    (root / ".DS_Store").write_bytes(b"x")
    (root / "b" / "notes.txt").write_text("n")
    before = _snapshot(root)
    siblings_before = sorted(p.name for p in tmp_path.iterdir())
    _ingest(root)
    assert _snapshot(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings_before


# --------------------------------------------------------------------------- parallel decode


def test_decode_with_one_or_two_workers_is_identical(tmp_path):
    rels = _make_class(tmp_path, "a", 35) + _make_class(tmp_path, "b", 35, start_seed=500)
    (tmp_path / "a" / "zz_bad.png").write_bytes(b"bad")
    rels.append("a/zz_bad.png")
    assert len(rels) >= 64  # the process-pool path
    serial = decode_all(tmp_path, rels, 8, 3, workers=1)
    parallel = decode_all(tmp_path, rels, 8, 3, workers=2)
    assert len(serial) == len(parallel) == len(rels)
    for (a, ra), (b, rb) in zip(serial, parallel, strict=True):
        assert ra == rb
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
    assert serial[-1][0] is None and serial[-1][1]
    ds1 = _ingest(tmp_path, workers=1, channels=3)
    ds2 = _ingest(tmp_path, workers=2, channels=3)
    np.testing.assert_array_equal(ds1.images, ds2.images)
    assert ds1.paths == ds2.paths and ds1.skipped == ds2.skipped


# --------------------------------------------------------------------------- JPEG draft


def _smooth_jpeg(path: Path, width: int, height: int) -> Path:
    """A smooth RGB picture (one period of sines whatever its size), so a reduced-scale
    decode stays close to a full one."""
    y, x = np.mgrid[0:height, 0:width].astype(float)
    u, v = 2 * np.pi * x / width, 2 * np.pi * y / height
    rgb = np.stack(
        [127 + 120 * np.sin(u), 127 + 120 * np.cos(v), 127 + 100 * np.sin(u + v)],
        axis=-1,
    )
    return _save(path, Image.fromarray(rgb.astype(np.uint8)), quality=90)


@pytest.fixture
def draft_scales(monkeypatch) -> list[int]:
    """Records the DCT scale (1, 2, 4 or 8) of every JPEG draft Pillow makes."""
    scales: list[int] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        scales.append(self.decoderconfig[0] if self.decoderconfig else 1)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return scales


def _full_decode(monkeypatch, path: Path, image_size: int, channels: int) -> np.ndarray:
    """``decode_image`` with Pillow's draft turned off: every JPEG decoded at full size."""
    with monkeypatch.context() as m:
        m.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: None)
        return decode_image(path, image_size, channels)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("size", "scale"), [((64, 64), 2), ((256, 200), 4), ((800, 300), 8)])
def test_jpeg_twice_the_target_is_drafted_and_close_to_a_full_decode(
    tmp_path, monkeypatch, draft_scales, size, scale, channels
):
    path = _smooth_jpeg(tmp_path / "big.jpg", *size)
    reference = _full_decode(monkeypatch, path, 32, channels).astype(int)
    array = decode_image(path, 32, channels)
    assert draft_scales == [scale]
    assert array.shape == (channels, 32, 32) and array.dtype == np.uint8
    diff = np.abs(array.astype(int) - reference)
    # The draft rounds its size up to whole pixels (800 / 8 -> 100, 300 / 8 -> 38), which
    # shifts the crop by a fraction of a pixel: a few levels, never a different picture.
    assert 0 < diff.mean() < 3 and diff.max() <= 16, (diff.mean(), diff.max())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(63, 300), (300, 63), (40, 40), (32, 32)])
def test_jpeg_under_twice_the_target_decodes_exactly_at_full_size(
    tmp_path, monkeypatch, draft_scales, size, channels
):
    path = _smooth_jpeg(tmp_path / "small.jpg", *size)
    array = decode_image(path, 32, channels)
    assert draft_scales == [1]
    np.testing.assert_array_equal(array, _full_decode(monkeypatch, path, 32, channels))


# --------------------------------------------------------------------------- memory


def _assert_same_results(got: list, expected: list) -> None:
    """Equal arrays, and no skip reason, file by file."""
    assert len(got) == len(expected)
    for (a, ra), (b, rb) in zip(got, expected, strict=True):
        assert ra is rb is None
        np.testing.assert_array_equal(a, b)


def test_ingest_holds_one_output_array_not_a_list_of_images(tmp_path):
    _make_class(tmp_path, "a", 60)
    _make_class(tmp_path, "b", 60, start_seed=500)
    _ingest(tmp_path, image_size=48, channels=3)  # first use loads Pillow's plugins: not ours
    tracemalloc.start()
    try:
        ds = _ingest(tmp_path, image_size=48, channels=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ds.images.shape == (120, 3, 48, 48)
    # A list of decoded images stacked at the end would peak at twice the array or more.
    assert peak < 1.5 * ds.images.nbytes, (peak, ds.images.nbytes)


def test_memory_mapped_output_equals_in_memory_output(tmp_path):
    root, scratch = tmp_path / "data", tmp_path / "scratch"
    _make_class(root, "a", 5)
    _make_class(root, "b", 5, start_seed=500, ext=".jpg")
    (root / "a" / "broken.png").write_bytes(b"junk")  # leaves an unused row at the end
    scratch.mkdir()
    in_memory = _ingest(root, channels=3)
    mapped = _ingest(root, channels=3, memmap_above=0, scratch_dir=scratch)
    assert not isinstance(in_memory.images, np.memmap)
    assert isinstance(mapped.images, np.memmap)
    assert list(scratch.iterdir()) == []  # the backing file is unlinked from the start
    np.testing.assert_array_equal(mapped.images, in_memory.images)
    assert mapped.paths == in_memory.paths and mapped.skipped == in_memory.skipped
    np.testing.assert_array_equal(mapped.split, in_memory.split)
    dataset.save_dataset(tmp_path / "m", mapped)
    dataset.save_dataset(tmp_path / "i", in_memory)
    for name in sorted(p.name for p in (tmp_path / "i").iterdir()):
        assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "i" / name).read_bytes()


# --------------------------------------------------------------------------- streaming decode


def test_a_spawned_worker_decodes_exactly_like_this_process(tmp_path):
    # iter_decoded's main process often finishes a small folder before a worker is up,
    # so this runs the worker's function in a real spawned process directly.
    rels = _make_class(tmp_path, "a", 3) + _make_class(tmp_path, "b", 3, 100, ext=".jpg")
    (tmp_path / "a" / "zz_bad.png").write_bytes(b"bad")
    paths = [str(tmp_path / rel) for rel in [*rels, "a/zz_bad.png"]]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        remote = pool.submit(ingest.decode_chunk, paths, 8, 3).result()
    _assert_same_results(remote[:-1], ingest.decode_chunk(paths[:-1], 8, 3))
    assert remote[-1][0] is None and remote[-1][1] == ingest.decode_chunk(paths[-1:], 8, 3)[0][1]


class _FakePool:
    """Stands in for ProcessPoolExecutor and records what it is given.

    ``workers_start``: whether the start-up pings (``os.getpid``) complete;
    ``workers_decode``: whether decode chunks run (at submit) or stay queued forever.
    """

    instances: ClassVar[list[_FakePool]] = []
    workers_start = True
    workers_decode = True

    def __init__(self, max_workers: int, mp_context, initializer=None, initargs=()) -> None:
        self.max_workers = max_workers
        self.chunks: list[Future] = []
        self.pings = 0
        self.shutdown_kwargs: dict | None = None
        _FakePool.instances.append(self)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        if fn is os.getpid:
            self.pings += 1
            if self.workers_start:
                future.set_result(0)
            return future
        self.chunks.append(future)
        if self.workers_decode:
            future.set_running_or_notify_cancel()
            future.set_result(fn(*args))
        return future

    def shutdown(self, **kwargs) -> None:
        self.shutdown_kwargs = kwargs


@pytest.fixture
def fake_pool(monkeypatch) -> type[_FakePool]:
    monkeypatch.setattr(ingest, "ProcessPoolExecutor", _FakePool)
    _FakePool.instances.clear()
    return _FakePool


def test_parallel_decode_keeps_a_bounded_number_of_chunks_in_flight(tmp_path, fake_pool):
    rels = _make_class(tmp_path, "a", 40) + _make_class(tmp_path, "b", 40, start_seed=500)
    stream = ingest.iter_decoded(tmp_path, rels, 8, 1, workers=2)  # 16 chunks of 5 files
    first = next(stream)
    (pool,) = fake_pool.instances
    assert pool.max_workers == 1 and pool.pings == 1  # this process is the other decoder
    assert len(pool.chunks) == 4 * 2 + 1  # the first 8, then one more as one is taken
    rest = list(stream)
    assert len(pool.chunks) == 16
    assert pool.shutdown_kwargs == {"wait": True, "cancel_futures": True}
    _assert_same_results([first, *rest], decode_all(tmp_path, rels, 8, 1, workers=1))


def test_main_process_decodes_alone_until_a_worker_is_up(tmp_path, fake_pool, monkeypatch):
    rels = _make_class(tmp_path, "a", 40) + _make_class(tmp_path, "b", 40, start_seed=500)
    monkeypatch.setattr(fake_pool, "workers_start", False)
    got = list(ingest.iter_decoded(tmp_path, rels, 8, 1, workers=3))
    (pool,) = fake_pool.instances
    assert pool.pings == 2 and pool.chunks == []  # nothing was handed to absent workers
    assert pool.shutdown_kwargs == {"wait": False, "cancel_futures": True}
    _assert_same_results(got, decode_all(tmp_path, rels, 8, 1, workers=1))


def test_main_process_takes_chunks_no_worker_has_started(tmp_path, fake_pool, monkeypatch):
    rels = _make_class(tmp_path, "a", 40) + _make_class(tmp_path, "b", 40, start_seed=500)
    monkeypatch.setattr(fake_pool, "workers_decode", False)
    got = list(ingest.iter_decoded(tmp_path, rels, 8, 1, workers=2))
    (pool,) = fake_pool.instances
    assert len(pool.chunks) == 16 and all(f.cancelled() for f in pool.chunks)
    _assert_same_results(got, decode_all(tmp_path, rels, 8, 1, workers=1))


def test_stopping_the_stream_early_cancels_what_has_not_started(tmp_path, fake_pool):
    rels = _make_class(tmp_path, "a", 40) + _make_class(tmp_path, "b", 40, start_seed=500)
    stream = ingest.iter_decoded(tmp_path, rels, 8, 1, workers=2)
    next(stream)
    stream.close()
    (pool,) = fake_pool.instances
    assert len(pool.chunks) == 9
    assert pool.shutdown_kwargs == {"wait": True, "cancel_futures": True}


# --------------------------------------------------------------------------- summary


def test_summary_is_consistent_with_dataset(split_root):
    ds = _ingest(split_root)
    summ = report.summary(ds)
    assert summ["images"] == len(ds.labels) == ds.images.shape[0] == sum(COUNTS.values())
    assert summ["classes"] == len(ds.classes) == len(COUNTS)
    assert summ["split"] == {
        name: int((ds.split == i).sum()) for i, name in enumerate(dataset.SPLITS)
    }
    assert sum(summ["split"].values()) == summ["images"]
    assert [row["class"] for row in summ["per_class"]] == ds.classes
    for name, n in COUNTS.items():
        assert sum(_per_class(summ)[name].values()) == n
    for split_name in dataset.SPLITS:
        assert sum(c[split_name] for c in summ["per_class"]) == summ["split"][split_name]
    assert summ["skipped"] == {"count": 0, "files": []}
    assert summ["ignored"] == {"hidden": 0, "non_image": 0, "outside_class_folder": 0,
                               "symlinked_folder": 0}  # fmt: skip
    assert summ["duplicates"] == {"groups": 0, "images": 0, "cross_class_groups": 0}


# --------------------------------------------------------------------------- duplicates

# At image_size 12 and 3 channels the 12x12 RGB noise images decode unresized, so a
# one-pixel change survives decoding and the near-copy below is not a duplicate.
DUP_ARGS = {"image_size": 12, "channels": 3}
DUP_GROUPS = [  # every group of identical decoded images, first member (sorted path) first
    ["a/copy_of_000.png", "a/img000.png", "a/sub/again_000.bmp"],
    ["a/copy_of_005.png", "a/img005.png"],
    ["a/img003.png", "b/same_as_a003.png"],  # one picture filed under two classes
    ["b/copy_of_000.png", "b/img000.png"],
    ["c/img002.png", "c/twin1.png", "c/twin2.png"],
]


@pytest.fixture(scope="module")
def dup_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dups")
    _make_class(root, "a", 12)
    _make_class(root, "b", 9, start_seed=100)
    _make_class(root, "c", 6, start_seed=200)
    _save(root / "a" / "copy_of_000.png", _noise(0))
    _save(root / "a" / "sub" / "again_000.bmp", _noise(0))  # other format, same pixels
    _save(root / "a" / "copy_of_005.png", _noise(5))
    _save(root / "b" / "same_as_a003.png", _noise(3))
    _save(root / "b" / "copy_of_000.png", _noise(100))
    _save(root / "c" / "twin1.png", _noise(202))
    _save(root / "c" / "twin2.png", _noise(202))
    near = np.asarray(_noise(0)).copy()
    near[5, 5] = 255 - near[5, 5]
    _save(root / "a" / "near_000.png", Image.fromarray(near))
    return root


def _groups_of(ds: dataset.Dataset) -> list[list[str]]:
    """The dataset's groups of more than one image, as sorted path lists."""
    by_group: dict[int, list[str]] = {}
    for path, group in zip(ds.paths, ds.groups.tolist(), strict=True):
        by_group.setdefault(group, []).append(path)
    return sorted(sorted(paths) for paths in by_group.values() if len(paths) > 1)


def test_duplicates_are_found_counted_and_keep_their_labels(dup_root):
    ds = _ingest(dup_root, **DUP_ARGS)
    assert _groups_of(ds) == DUP_GROUPS
    assert report.summary(ds)["duplicates"] == {
        "groups": 5,
        "images": 7,  # 2 + 1 + 1 + 1 + 2 beyond each group's first
        "cross_class_groups": 1,
    }
    label = dict(zip(ds.paths, ds.labels.tolist(), strict=True))
    assert label["b/same_as_a003.png"] == ds.classes.index("b")
    assert label["a/img003.png"] == ds.classes.index("a")
    assert label["a/near_000.png"] == ds.classes.index("a")
    assert len(ds.paths) == 12 + 9 + 6 + 8


@pytest.mark.parametrize("channels", [1, 3])
def test_every_duplicate_group_is_in_one_split_for_any_split_seed(dup_root, channels):
    args = DUP_ARGS | {"channels": channels}
    outside_train = 0
    for split_seed in range(8):
        ds = _ingest(dup_root, split_seed=split_seed, **args)
        where = dict(zip(ds.paths, ds.split.tolist(), strict=True))
        for members in DUP_GROUPS:
            splits = {p: dataset.SPLITS[where[p]] for p in members}
            assert len(set(splits.values())) == 1, f"split_seed={split_seed}: {splits}"
        outside_train += sum(where[members[0]] != 0 for members in DUP_GROUPS)
    assert outside_train > 0  # some groups did land in val or test: the check above had teeth


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_classes_are_split_by_group_in_todays_proportions(dup_root, split_seed):
    ds = _ingest(dup_root, split_seed=split_seed, **DUP_ARGS)
    _, first = np.unique(ds.groups, return_index=True)
    # a: 12 pictures + the near copy (a/img003's group, with its copy in b, counts here);
    # b: 9 pictures; c: 6. Copies add no groups.
    groups_per_class = {"a": 13, "b": 9, "c": 6}
    for name, n_groups in groups_per_class.items():
        mine = first[ds.labels[first] == ds.classes.index(name)]
        assert len(mine) == n_groups, name
        got = tuple(np.bincount(ds.split[mine], minlength=3).tolist())
        assert got == split.split_sizes(n_groups, VAL, TEST), name


def test_class_with_too_few_distinct_images_is_a_data_error(tmp_path):
    _make_class(tmp_path, "a", 4)
    _make_class(tmp_path, "b", 2, start_seed=50)
    _save(tmp_path / "b" / "copy1.png", _noise(50))
    _save(tmp_path / "b" / "copy2.png", _noise(51))
    with pytest.raises(DataError) as info:
        _ingest(tmp_path, **DUP_ARGS)
    message = str(info.value)
    assert str(tmp_path / "b") in message
    assert "4 usable" in message and "only 2 distinct" in message and "at least 3" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- the stage


def _run_stage(monkeypatch, root: Path, out: Path, **data_params) -> dict[str, str]:
    """Run ``stages.ingest.main`` with these ``data`` params; return manifest path -> split."""
    monkeypatch.syspath_prepend(str(REPO))
    stage = importlib.import_module("stages.ingest")
    params_module = importlib.import_module("initbench.params")  # main imports it when run
    params = {"image_size": 8, "channels": 1, "val_fraction": VAL, "test_fraction": TEST,
              "bit_depth": "auto"}  # fmt: skip
    params.update(data_params)
    seed = params.pop("seed", 0)
    fake = SimpleNamespace(seed=seed, data=SimpleNamespace(**params))
    monkeypatch.setattr(params_module, "load_params", lambda *args, **kwargs: fake)
    argv = ["ingest", "--data", str(root), "--out", str(out / "dataset"),
            "--report", str(out / "ingest.json")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    stage.main()
    with (out / "dataset" / "manifest.csv").open(newline="") as f:
        return {row["path"]: row["split"] for row in csv.DictReader(f)}


def _named_split(ds: dataset.Dataset) -> dict[str, str]:
    return {p: dataset.SPLITS[s] for p, s in zip(ds.paths, ds.split.tolist(), strict=True)}


def test_stage_splits_by_data_split_seed_not_seed(split_root, tmp_path, monkeypatch):
    by_split_seed_7 = _named_split(_ingest(split_root, split_seed=7))
    assert by_split_seed_7 != _named_split(_ingest(split_root, split_seed=0))
    got = _run_stage(monkeypatch, split_root, tmp_path / "r1", split_seed=7, seed=0)
    assert got == by_split_seed_7
    again = _run_stage(monkeypatch, split_root, tmp_path / "r2", split_seed=7, seed=3)
    assert again == by_split_seed_7


def test_stage_reports_duplicates_in_metrics_and_on_stderr(dup_root, tmp_path, monkeypatch, capsys):
    got = _run_stage(monkeypatch, dup_root, tmp_path, split_seed=0, **DUP_ARGS)
    assert all(len({got[p] for p in members}) == 1 for members in DUP_GROUPS)
    metrics = json.loads((tmp_path / "ingest.json").read_text())
    assert metrics["duplicates"] == {"groups": 5, "images": 7, "cross_class_groups": 1}
    lines = [line for line in capsys.readouterr().err.splitlines() if "identical" in line]
    assert len(lines) == 1
    assert "5 group(s)" in lines[0] and "7 copies" in lines[0] and "one split" in lines[0]


def test_stage_says_nothing_about_duplicates_on_clean_data(
    split_root, tmp_path, monkeypatch, capsys
):
    _run_stage(monkeypatch, split_root, tmp_path, split_seed=0)
    assert "identical" not in capsys.readouterr().err
    metrics = json.loads((tmp_path / "ingest.json").read_text())
    assert metrics["duplicates"] == {"groups": 0, "images": 0, "cross_class_groups": 0}


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (b"cat/chat_\xe9t\xe9.png", "cat/chat_\\xe9t\\xe9.png"),
        (b"chi\xe9n/0.png", "chi\\xe9n:"),  # the folder, the first bad name on the way
        (b"cat/sous-dossier_\xe9/0.png", "cat/sous-dossier_\\xe9:"),
    ],
    ids=["file", "class folder", "subfolder"],
)
def test_a_name_that_is_not_utf8_is_named_before_any_decoding(tmp_path, bad, named, monkeypatch):
    # As copies from FAT/SMB shares arrive: Latin-1 bytes, not UTF-8.
    for rel in ("cat/0.png", "dog/0.png", os.fsdecode(bad)):
        path = tmp_path / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 128).save(path, format="PNG")
    monkeypatch.setattr(ingest, "decode_chunk", lambda *a: pytest.fail("decoded first"))
    with pytest.raises(DataError) as error:
        scan.scan_folder(tmp_path / "data")
    message = str(error.value)
    assert f"{tmp_path / 'data'}/{named}" in message
    assert "not valid UTF-8" in message and "rename it" in message
    message.encode("utf-8")  # the message itself prints anywhere


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def test_symlinked_folders_are_not_followed_and_are_reported(tmp_path):
    # What DVC versions: it follows neither a symlinked class folder nor a symlinked
    # subfolder, so ingest must not read them either, and must say so.
    root = tmp_path / "data"
    for i in range(3):
        _png(root / "cat" / f"{i}.png", i)
        _png(root / "dog" / f"{i}.png", 10 + i)
        _png(tmp_path / "elsewhere" / "bird" / f"{i}.png", 20 + i)
        _png(tmp_path / "pool" / "more_cats" / f"{i}.png", 30 + i)
        _png(root / "cat" / "real_sub" / f"{i}.png", 40 + i)  # a plain subfolder is read
    (root / "bird").symlink_to(Path("..", "elsewhere", "bird"))
    (root / "cat" / "extra").symlink_to(Path("..", "..", "pool", "more_cats"))
    found = scan.scan_folder(root)
    assert found.classes == ["cat", "dog"]
    assert len(found.files) == 9 and all("extra" not in rel for rel, _ in found.files)
    assert found.ignored["symlinked_folder"] == ["bird", "cat/extra"]


def test_ingest_notes_a_large_class_imbalance():
    # The field case: 500 images of one class, 10 of another.
    per_class = [{"class": "cat", "train": 350, "val": 50, "test": 100},
                 {"class": "dog", "train": 6, "val": 2, "test": 2}]  # fmt: skip
    line = report.imbalance_warning(per_class)
    assert line is not None and "'cat' has 500 images, 'dog' 10 (50x)" in line
    assert "macro-F1" in line
    per_class[1] = {"class": "dog", "train": 40, "val": 5, "test": 5}  # 10x: not over
    assert report.imbalance_warning(per_class) is None


# --------------------------------------------------------------------------- field cases: layouts

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


def _case(tmp_path: Path, script: str, *args: str) -> Path:
    """Write the input of a field case (shared/cases) and return its folder; the case's own
    script when it is there, else skip (the cases come with the project's shared files)."""
    path = CASES / script
    if not path.is_file():
        pytest.skip(f"{path} not present")
    out = tmp_path / "data"
    subprocess.run([sys.executable, str(path), str(out), *args], check=True,
                   capture_output=True)  # fmt: skip
    return out


def test_a_split_layout_is_refused_with_what_to_point_data_at(tmp_path):
    root = _case(tmp_path, "nested_split_root.py")  # train/{cat,dog}/, test/{cat,dog}/
    with pytest.raises(DataError) as info:
        scan.scan_folder(root)
    message = str(info.value)
    assert "looks like a split layout" in message and "test/, train/" in message
    assert "the folders cat, dog" in message and f"say {root}/train" in message


def test_class_folders_inside_split_named_ones_are_still_classes_with_their_own_images(tmp_path):
    # Images directly in train/ and test/ make them classes, whatever their names.
    root = tmp_path / "data"
    for name in ("train", "test"):
        _make_class(root, name, 3)
        _make_class(root, f"{name}/sub", 2, start_seed=10)
    assert scan.scan_folder(root).classes == ["test", "train"]


def test_the_same_subfolders_in_every_class_are_not_a_split_layout(tmp_path):
    root = tmp_path / "data"
    for seed, name in enumerate(("cat", "dog")):
        for where in ("indoor", "outdoor"):
            _make_class(root, f"{name}/{where}", 2, start_seed=10 * seed + len(where))
    assert scan.scan_folder(root).classes == ["cat", "dog"]


def test_a_wrapper_folder_names_the_class_folders_inside_it(tmp_path):
    root = tmp_path / "data"
    _make_class(root, "PetImages/cat", 2)
    _make_class(root, "PetImages/dog", 2, start_seed=5)
    with pytest.raises(DataError) as info:
        scan.scan_folder(root)
    assert (f"{root}/PetImages/ holds the folders cat, dog: if those are the classes, use "
            f"{root}/PetImages as the data folder") in str(info.value)  # fmt: skip


@pytest.mark.parametrize(("kind", "names"), [("case", ("Cat", "cat")),
                                             ("nfd", ("café", "café"))])  # fmt: skip
def test_class_names_that_collide_on_macos_and_windows_stop_naming_both(tmp_path, kind, names):
    root = _case(tmp_path, "colliding_class_names.py", kind)
    with pytest.raises(DataError) as info:
        scan.scan_folder(root)
    message = str(info.value)
    assert "differ only in case or Unicode form" in message
    assert all(repr(name) in message for name in names)
    if kind == "nfd":  # the two print alike: their code points tell them apart
        assert "'cafe\\u0301'" in message and "'caf\\xe9'" in message


# --------------------------------------------------------------------------- field cases: formats


def test_every_format_the_pinned_pillow_decodes_is_read():
    from PIL import features

    for extension in (".pgm", ".ppm", ".pbm", ".pnm", ".jpg", ".png", ".tif", ".webp", ".qoi"):
        assert extension in scan.IMAGE_EXTENSIONS, extension
    assert (".avif" in scan.IMAGE_EXTENSIONS) == features.check("avif")
    for extension in (".heic", ".eps", ".mpg", ".h5", ".txt", ".pdf"):  # unread, or stubs
        assert extension not in scan.IMAGE_EXTENSIONS, extension


@pytest.mark.parametrize(("variant", "classes"), [("avif", ["browser", "cat", "dog"]),
                                                  ("netpbm", ["s1", "s2"])])  # fmt: skip
def test_avif_and_netpbm_folders_are_ingested(tmp_path, variant, classes):
    from PIL import features

    if variant == "avif" and not features.check("avif"):
        pytest.skip("this Pillow reads no AVIF")
    root = _case(tmp_path, "phone_formats.py", variant)
    ds = _ingest(root)
    assert ds.classes == classes and not ds.skipped
    assert len(ds.labels) == (24 if variant == "avif" else 20)


def test_a_class_of_heic_photos_says_which_extension_and_how_many(tmp_path):
    root = _case(tmp_path, "phone_formats.py", "heic")
    with pytest.raises(DataError) as info:
        _ingest(root)
    message = str(info.value)
    assert message.startswith(f"{root}/iphone/: 0 usable image(s); it holds 8 .HEIC file(s), "
                              "not a format the pinned Pillow reads: convert them")  # fmt: skip


def test_heic_photos_named_jpg_are_skipped_with_what_they_are(tmp_path):
    root = _case(tmp_path, "phone_formats.py", "disguised")
    ds = _ingest(root)
    reasons = {item["path"]: item["reason"] for item in ds.skipped}
    assert sorted(reasons) == [f"cat/IMG_{5000 + i}.jpg" for i in range(3)]
    assert all(r.startswith("a HEIC/HEIF file (ISO-BMFF brand 'heic')") for r in reasons.values())


# --------------------------------------------------------------------------- field cases: sizes


@pytest.mark.parametrize(
    ("size", "note"),
    [((48, 48), None), ((9, 9), None),  # 32 / 9 = 3.6x: not small
     ((7, 9), "small: 7x9 px, upscaled 5x"), ((40, 9), "sliver: 40x9 px, the center crop keeps 22.50% of it"),
     ((4000, 10), "sliver: 4000x10 px, the center crop keeps 0.25% of it")],
)  # fmt: skip
def test_size_note_lists_small_pictures_and_slivers(size, note):
    assert decode.size_note(*size, 32) == note


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 500)])
def test_degenerate_pictures_are_a_reason_to_skip(size):
    with pytest.raises(ValueError, match=rf"degenerate: {size[0]}x{size[1]} px"):
        decode.size_note(*size, 32)


def test_tracking_pixels_are_skipped_and_slivers_listed(tmp_path):
    root = _case(tmp_path, "size_extremes.py", "tiny")
    ds = _ingest(root, image_size=32)
    assert sorted(s["path"] for s in ds.skipped) == ["cat/pixel_1x1.gif", "cat/pixel_2x2.png"]
    assert all(s["reason"].startswith("degenerate:") for s in ds.skipped)
    assert sorted(f["path"] for f in ds.flagged["sliver"]) == ["dog/strip_10x4000.png",
                                                               "dog/strip_4000x10.png"]  # fmt: skip
    summary = report.summary(ds)
    assert summary["flagged"] == ds.flagged
    warnings, line = report.report_lines(summary, "data")
    assert line.endswith("; kept but listed: 2 sliver")
    assert any("kept 2 sliver picture(s)" in w and "data/dog/strip_10x4000.png" in w
               for w in warnings)  # fmt: skip


def test_ordinary_pictures_are_not_flagged_and_the_report_keeps_its_keys(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(("a", "b")):
        _make_class(root, name, 5, start_seed=10 * k)
    ds = _ingest(root)
    assert ds.flagged == {} and "flagged" not in report.summary(ds)


# --------------------------------------------------------------------------- field cases: Ctrl-C


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.2])
def test_ctrl_c_during_ingest_prints_interrupted_once_and_no_traceback(tmp_path, delay):
    # Ctrl-C goes to the whole process group: the stage and its decode workers, some of
    # them still importing in the first second.
    import signal
    import time

    data = _case(tmp_path, "many_images.py", "1500")
    shutil.copy(Path(__file__).parents[1] / "params.yaml", tmp_path / "params.yaml")
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.ingest", "--data", str(data), "--out",
         str(tmp_path / "dataset"), "--report", str(tmp_path / "ingest.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("decoding")]
    if process.returncode == 0:
        pytest.skip("ingest finished before the interrupt")
    assert (process.returncode, lines) == (130, ["interrupted"])


def test_the_ingest_stage_module_loads_no_params_for_its_workers():
    code = "import stages.ingest, sys; print(sorted({'pydantic', 'initbench.params'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- large pictures


def test_a_large_picture_decodes_only_while_its_decoder_holds_a_slot(tmp_path, monkeypatch):
    import fcntl
    import threading
    import time

    path = _save(tmp_path / "big.png", _noise(0, size=40))
    monkeypatch.setattr(decode, "LARGE_PIXELS", 40 * 40 - 1)  # this picture counts as large
    slots = tmp_path / "slots"
    slots.mkdir()
    (slots / "slot0").touch()
    decode.set_large_slots(slots)
    held = os.open(slots / "slot0", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # another decoder holds the only slot
        done = []
        worker = threading.Thread(target=lambda: done.append(decode.decode_file(path, 8, 1)))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and not done  # waits for the slot
        small = _save(tmp_path / "small.png", _noise(1, size=30))
        assert decode.decode_file(small, 8, 1).shape == (1, 8, 8)  # a small one does not wait
        os.close(held)  # releases it
        worker.join(timeout=10)
        assert done and done[0].shape == (1, 8, 8)
        again = os.open(slots / "slot0", os.O_RDWR)
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and it gave the slot back
        os.close(again)
    finally:
        decode.set_large_slots(None)


def test_a_decoder_without_slot_files_decodes_unbounded(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "LARGE_PIXELS", 10)
    decode.set_large_slots(tmp_path / "gone")  # the folder was removed: nothing to wait on
    try:
        assert decode.decode_file(_save(tmp_path / "x.png", _noise(0, 20)), 8, 1).shape == (1, 8, 8)
    finally:
        decode.set_large_slots(None)
