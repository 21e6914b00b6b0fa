import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import silhouettes, standardize

from initbench.core.cli import run
from initbench.core.errors import DataError
from initbench.core.files import write_json, write_npy
from initbench.inits.patches import (
    apply_zca,
    drop_flat,
    fit_zca,
    normalize_contrast,
    patch_positions,
    patch_std,
    prepare_patches,
    sample_patches,
)


def smooth_images(n: int, channels: int, side: int, seed: int) -> np.ndarray:
    """Correlated float32 ``(n, channels, side, side)`` images: noise blurred by a 3x3 box."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, channels, side + 2, side + 2))
    blurred = sum(noise[:, :, i : i + side, j : j + side] for i in range(3) for j in range(3))
    return (blurred / 3 + 0.5).astype(np.float32)


def test_sample_patches_shape_dtype_and_determinism():
    images = smooth_images(20, 3, 12, seed=0)
    patches = sample_patches(images, size=3, per_image=7, max_images=15, seed=1)
    assert patches.shape == (15 * 7, 3 * 3 * 3)
    assert patches.dtype == np.float32
    np.testing.assert_array_equal(patches, sample_patches(images, 3, 7, 15, seed=1))
    assert not np.array_equal(patches, sample_patches(images, 3, 7, 15, seed=2))
    # max_images beyond N: every image, once.
    assert sample_patches(images, 3, 2, 100, seed=1).shape == (20 * 2, 27)


def test_patches_are_windows_in_conv_weight_order():
    images = smooth_images(6, 2, 9, seed=3)
    patches = sample_patches(images, size=3, per_image=5, max_images=4, seed=4)
    image, row, col = patch_positions(6, 9, 9, 3, 5, 4, seed=4)
    assert len(image) == len(patches) == 20
    assert ((row >= 0) & (row <= 6) & (col >= 0) & (col <= 6)).all()
    for i in range(len(patches)):
        window = images[image[i], :, row[i] : row[i] + 3, col[i] : col[i] + 3]  # (C, kh, kw)
        np.testing.assert_array_equal(patches[i], window.reshape(-1))


def test_patches_come_only_from_the_selected_images():
    n, max_images = 30, 8
    # Every pixel of image i holds the value i, so a patch tells where it came from.
    images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 1, 6, 6))
    patches = sample_patches(images, size=3, per_image=4, max_images=max_images, seed=5)
    assert (patches == patches[:, :1]).all()  # never straddles two images
    sources = np.unique(patches[:, 0]).astype(np.int64)
    selected = np.unique(patch_positions(n, 6, 6, 3, 4, max_images, seed=5)[0])
    assert len(sources) == max_images
    np.testing.assert_array_equal(sources, selected)
    np.testing.assert_array_equal(np.bincount(patches[:, 0].astype(np.int64))[selected], 4)


@pytest.mark.parametrize(
    ("shape", "size", "per_image", "max_images", "match"),
    [
        ((4, 1, 5, 5), 6, 1, 1, "size 6 does not fit"),
        ((4, 1, 5, 5), 3, 0, 1, "per_image"),
        ((4, 1, 5, 5), 3, 1, 0, "max_images"),
        ((4, 5, 5), 3, 1, 1, r"\(N, C, H, W\)"),
        ((0, 1, 5, 5), 3, 1, 1, "n_images"),
    ],
)
def test_sample_patches_refuses_bad_arguments(shape, size, per_image, max_images, match):
    with pytest.raises(ValueError, match=match):
        sample_patches(np.zeros(shape, np.float32), size, per_image, max_images, seed=0)


def test_normalize_contrast_zero_mean_unit_scale():
    rng = np.random.default_rng(6)
    patches = (rng.standard_normal((500, 27)) * 3 + rng.standard_normal((500, 1)) * 10).astype(
        np.float32
    )
    normalized = normalize_contrast(patches, eps=1e-8)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(normalized.std(axis=1), 1, atol=1e-4)
    flat = normalize_contrast(np.full((2, 9), 5.0, np.float32))
    assert np.isfinite(flat).all() and (flat == 0).all()
    with pytest.raises(ValueError, match="eps"):
        normalize_contrast(patches, eps=-1.0)


def test_zca_whitened_covariance_is_identity():
    rng = np.random.default_rng(7)
    mixing = rng.standard_normal((9, 9))
    patches = (rng.standard_normal((20_000, 9)) @ mixing + 2.0).astype(np.float32)
    mean, matrix = fit_zca(patches, epsilon=1e-5)
    assert mean.shape == (9,) and matrix.shape == (9, 9)
    np.testing.assert_array_equal(matrix, matrix.T)
    whitened = apply_zca(patches, mean, matrix)
    assert whitened.dtype == np.float32
    assert np.abs(np.cov(whitened, rowvar=False) - np.eye(9)).max() < 0.05
    assert np.abs(whitened.mean(axis=0)).max() < 1e-3
    with pytest.raises(ValueError, match="epsilon"):
        fit_zca(patches, epsilon=0.0)
    with pytest.raises(ValueError, match="mean"):
        apply_zca(patches[:, :4], mean, matrix)


def test_patch_std_is_each_rows_std():
    rng = np.random.default_rng(12)
    patches = rng.standard_normal((20, 18)).astype(np.float32) * rng.uniform(0, 2, (20, 1))
    expected = []
    for row in patches.tolist():  # a plain loop over Python floats
        mean = sum(row) / len(row)
        expected.append((sum((v - mean) ** 2 for v in row) / len(row)) ** 0.5)
    np.testing.assert_allclose(patch_std(patches), expected, rtol=1e-5)


def test_drop_flat_keeps_patches_above_min_std_in_order():
    rng = np.random.default_rng(13)
    patches = rng.standard_normal((60, 9)) * rng.uniform(0, 0.3, (60, 1))
    patches[::6] = 2.5  # constant patches, e.g. background
    stds = [float(np.std(row)) for row in patches]
    kept = drop_flat(patches, 0.1)
    expected = np.array([row for row, std in zip(patches, stds, strict=True) if std > 0.1])
    assert 10 < len(kept) < 50
    np.testing.assert_array_equal(kept, expected)
    # min_std 0 drops exactly the constant patches, which contrast normalization maps to 0
    np.testing.assert_array_equal(drop_flat(patches, 0.0), np.delete(patches, slice(0, 60, 6), 0))
    with pytest.raises(ValueError, match="min_std"):
        drop_flat(patches, -0.1)


def test_prepare_patches_drops_flat_patches_and_fits_whitening_on_the_rest():
    images = standardize(silhouettes(40, 16, seed=14))
    raw = sample_patches(images, size=3, per_image=25, max_images=40, seed=15)
    flat = patch_std(raw) <= 0.1
    assert 0.3 < flat.mean() < 0.95  # silhouettes: mostly background and interior
    prepared = prepare_patches(raw, min_std=0.1, whiten=True, epsilon=0.01)
    assert prepared.sampled == len(raw) == 1000
    assert prepared.dropped_flat == flat.sum()
    np.testing.assert_array_equal(prepared.kept, raw[~flat])
    assert patch_std(prepared.kept).min() > 0.1
    # ZCA is fitted on the kept patches only: their mean, not the mean over all patches.
    normalized = normalize_contrast(prepared.kept)
    mean, matrix = fit_zca(normalized, 0.01)
    # ... rounded to float32, the precision every CPU's BLAS agrees on, before use
    np.testing.assert_array_equal(prepared.zca_mean, mean.astype(np.float32))
    np.testing.assert_array_equal(prepared.zca_matrix, matrix.astype(np.float32))
    assert prepared.zca_matrix.dtype == prepared.zca_mean.dtype == np.float32
    assert np.abs(prepared.zca_mean - normalize_contrast(raw).mean(axis=0)).max() > 0.01
    np.testing.assert_array_equal(
        prepared.whitened, apply_zca(normalized, prepared.zca_mean, prepared.zca_matrix)
    )
    plain = prepare_patches(raw, min_std=0.1, whiten=False, epsilon=0.01)
    np.testing.assert_array_equal(plain.zca_matrix, np.eye(9))
    np.testing.assert_array_equal(plain.whitened, normalized)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_all_flat_patches_are_a_one_line_error(noise):
    """Blank images (or a few grey levels of noise) leave nothing to cluster."""
    rng = np.random.default_rng(16)
    images = (rng.standard_normal((10, 1, 8, 8)) * noise).astype(np.float32)
    raw = sample_patches(images, size=3, per_image=10, max_images=10, seed=0)
    with pytest.raises(DataError, match=r"patches\.min_std=0\.5") as info:
        prepare_patches(raw, min_std=0.5, whiten=True, epsilon=0.01)
    assert "\n" not in str(info.value) and "0 of 100" in str(info.value)


# --------------------------------------------------------------------------- the stage


def write_arrays(folder, images: np.ndarray) -> None:
    """The files ``initbench.data.dataset.load_dataset`` reads, with every image in train."""
    x = images.astype(np.float64) / 255
    meta = {"image_size": images.shape[-1], "channels": images.shape[1],
            "mean": [float(x.mean())], "std": [float(x.std()) or 1.0]}  # fmt: skip
    for split, part in (("train", images), ("val", images[:2]), ("test", images[:2])):
        write_npy(folder / f"{split}_images.npy", part)
        write_npy(folder / f"{split}_labels.npy", np.zeros(len(part), np.int64))
    write_json(folder / "classes.json", ["a", "b"])
    write_json(folder / "meta.json", meta)


def run_patches_stage(monkeypatch, dataset, out, seed: int) -> int:
    """Run ``stages.patches`` as ``python -m`` would, with the repo's params.yaml; exit code."""
    from stages.patches import main

    argv = ["patches", "--dataset", str(dataset), "--seed", str(seed), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        run(main)
    except SystemExit as exc:
        return int(exc.code)
    return 0


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_repo(monkeypatch):
    """Work in the repository root, where params.yaml is; import ``stages`` from there."""
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))


def test_patches_stage_writes_kept_patches_and_counts_from_its_seed(in_repo, monkeypatch, tmp_path):
    from initbench.data.transforms import Normalize
    from initbench.params import load_params

    p = load_params().patches
    images = silhouettes(30, 16, seed=17)
    write_arrays(tmp_path / "data", images)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run_patches_stage(monkeypatch, tmp_path / "data", tmp_path / name, seed) == 0
    counts = json.loads((tmp_path / "a" / "counts.json").read_text())
    raw = np.load(tmp_path / "a" / "raw.npy")
    x = images.astype(np.float64) / 255
    standardized = Normalize([x.mean()], [x.std()])(torch.from_numpy(images)).numpy()
    sampled = sample_patches(standardized, p.size, p.per_image, p.max_images, seed=3)
    np.testing.assert_array_equal(raw, drop_flat(sampled, p.min_std))  # --seed, not params.seed
    assert counts == {"sampled": len(sampled), "dropped_flat": len(sampled) - len(raw)}
    assert counts["dropped_flat"] > 0
    assert np.load(tmp_path / "a" / "whitened.npy").shape == raw.shape
    for name in ("raw", "whitened", "zca_matrix"):
        same = (tmp_path / "b" / f"{name}.npy").read_bytes()
        assert (tmp_path / "a" / f"{name}.npy").read_bytes() == same, name
    assert (tmp_path / "c" / "raw.npy").read_bytes() != (tmp_path / "a" / "raw.npy").read_bytes()


def test_patches_stage_on_blank_images_fails_early_in_one_line(
    in_repo, monkeypatch, tmp_path, capsys
):
    write_arrays(tmp_path / "data", np.full((12, 1, 16, 16), 7, np.uint8))
    assert run_patches_stage(monkeypatch, tmp_path / "data", tmp_path / "out", seed=0) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "patches.min_std" in err
    assert not (tmp_path / "out").exists()
