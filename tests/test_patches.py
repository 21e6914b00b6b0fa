import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from initbench.kmeans_init import conv1_from_centroids, kmeans_centroids
from initbench.patches import (
    apply_zca,
    fit_zca,
    normalize_contrast,
    patch_positions,
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


def test_kmeans_centroids_count_determinism_and_too_few_samples():
    rng = np.random.default_rng(8)
    data = rng.standard_normal((400, 9)).astype(np.float32)
    centroids, inertia, n_iter = kmeans_centroids(data, clusters=5, seed=0)
    assert centroids.shape == (5, 9) and centroids.dtype == np.float64
    assert inertia > 0 and n_iter >= 1
    again, inertia_again, _ = kmeans_centroids(data, clusters=5, seed=0)
    np.testing.assert_array_equal(centroids, again)
    assert inertia == inertia_again
    with pytest.raises(ValueError, match="fewer clusters"):
        kmeans_centroids(data[:4], clusters=5, seed=0)


@pytest.fixture(scope="module")
def fitted():
    """The whole pipeline on small 2-channel images: images, raw patches, ZCA, centroids."""
    images = smooth_images(40, 2, 10, seed=9)
    raw = sample_patches(images, size=3, per_image=50, max_images=40, seed=10)
    normalized = normalize_contrast(raw)
    mean, matrix = fit_zca(normalized, epsilon=0.1)
    centroids, _, _ = kmeans_centroids(apply_zca(normalized, mean, matrix), clusters=6, seed=0)
    return images, raw, mean, matrix, centroids


def test_conv1_from_centroids_shapes_and_unit_scale(fitted):
    _, raw, mean, matrix, centroids = fitted
    weight, bias = conv1_from_centroids(centroids, mean, matrix, raw, channels=2, size=3)
    assert weight.shape == (6, 2, 3, 3) and weight.dtype == np.float32
    assert bias.shape == (6,) and bias.dtype == np.float32
    responses = raw.astype(np.float64) @ weight.reshape(6, -1).T.astype(np.float64) + bias
    np.testing.assert_allclose(responses.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(responses.std(axis=0), 1, atol=1e-3)


def test_conv_with_folded_filters_is_rescaled_whitened_response(fitted):
    images, raw, mean, matrix, centroids = fitted
    weight, bias = conv1_from_centroids(centroids, mean, matrix, raw, channels=2, size=3)
    # Reference: the centroid's response to the whitened patch, standardized on `raw`.
    reference = apply_zca(raw, mean, matrix).astype(np.float64) @ centroids.T
    mu, sigma = reference.mean(axis=0), reference.std(axis=0)
    out = F.conv2d(torch.from_numpy(images[:3]), torch.from_numpy(weight), torch.from_numpy(bias))
    out = out.numpy()  # (3, 6, 8, 8): valid positions; padding=1 shifts them by one
    padded = F.conv2d(
        torch.from_numpy(images[:3]), torch.from_numpy(weight), torch.from_numpy(bias), padding=1
    ).numpy()
    np.testing.assert_allclose(padded[:, :, 1:-1, 1:-1], out, atol=1e-5)
    for n, r, c in [(0, 0, 0), (1, 3, 5), (2, 7, 7), (2, 4, 1)]:
        patch = images[n, :, r : r + 3, c : c + 3].reshape(1, -1)
        expected = (apply_zca(patch, mean, matrix).astype(np.float64) @ centroids.T - mu) / sigma
        np.testing.assert_allclose(out[n, :, r, c], expected[0], rtol=1e-3, atol=1e-3)


def test_identity_whitening_and_degenerate_filter():
    rng = np.random.default_rng(11)
    raw = rng.standard_normal((300, 4)).astype(np.float32) * 2 + 1
    centroids = np.vstack([rng.standard_normal((2, 4)), np.zeros((1, 4))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero
        weight, bias = conv1_from_centroids(centroids, np.zeros(4), np.eye(4), raw, 1, 2)
    assert weight.shape == (3, 1, 2, 2)
    assert np.isfinite(weight).all() and np.isfinite(bias).all()
    assert (weight[2] == 0).all() and bias[2] == 0  # left unscaled, not divided by 0
    # Unwhitened: each filter is its centroid, rescaled by a positive factor.
    for i in range(2):
        ratio = weight[i].reshape(-1) / centroids[i]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
        assert ratio[0] > 0
    with pytest.raises(ValueError, match="centroids"):
        conv1_from_centroids(centroids, np.zeros(4), np.eye(4), raw, 1, 3)
