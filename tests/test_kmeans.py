import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import silhouettes, standardize
from torch import nn

from initbench.core.cli import run
from initbench.core.errors import DataError
from initbench.core.files import write_json, write_npy
from initbench.inits.kmeans import (
    conv1_from_centroids,
    count_distinct,
    default_filter_norm,
    kmeans_centroids,
    kmeans_conv1,
)
from initbench.inits.patches import (
    apply_zca,
    fit_zca,
    normalize_contrast,
    prepare_patches,
    sample_patches,
)
from initbench.models.cnn import build_classifier, seeded_encoder
from initbench.models.transfer import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


def smooth_images(n: int, channels: int, side: int, seed: int) -> np.ndarray:
    """Correlated float32 ``(n, channels, side, side)`` images: noise blurred by a 3x3 box."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, channels, side + 2, side + 2))
    blurred = sum(noise[:, :, i : i + side, j : j + side] for i in range(3) for j in range(3))
    return (blurred / 3 + 0.5).astype(np.float32)


def default_conv(in_channels: int, out_channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(in_channels, out_channels, 3)
    return conv.weight.detach().numpy().copy(), conv.bias.detach().numpy().copy()


def filter_norms(weight: np.ndarray) -> np.ndarray:
    return np.linalg.norm(weight.reshape(len(weight), -1).astype(np.float64), axis=1)


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


@pytest.mark.parametrize(("in_channels", "size"), [(1, 3), (3, 3), (2, 5)])
def test_default_filter_norm_is_pytorchs_default_conv2d_init(in_channels, size):
    torch.manual_seed(0)
    weight = nn.Conv2d(in_channels, 20_000, size).weight.detach().numpy()
    rms = np.sqrt((filter_norms(weight) ** 2).mean())
    expected = default_filter_norm(in_channels * size * size)
    assert abs(rms - expected) < 0.01 * expected
    assert abs(expected - 1 / np.sqrt(3)) < 1e-12  # 1/3 expected squared norm, any fan_in
    with pytest.raises(ValueError, match="fan_in"):
        default_filter_norm(0)


@pytest.fixture(scope="module")
def fitted():
    """The whole pipeline on small 2-channel images: images, ZCA, centroids, a default conv."""
    images = smooth_images(40, 2, 10, seed=9)
    raw = sample_patches(images, size=3, per_image=50, max_images=40, seed=10)
    normalized = normalize_contrast(raw)
    mean, matrix = fit_zca(normalized, epsilon=0.1)
    centroids, _, _ = kmeans_centroids(apply_zca(normalized, mean, matrix), clusters=6, seed=0)
    return images, mean, matrix, centroids, default_conv(2, 6, seed=0)


def test_conv1_from_centroids_shapes_default_norm_and_zero_bias(fitted):
    _, _, matrix, centroids, (default_weight, default_bias) = fitted
    weight, bias, degenerate = conv1_from_centroids(centroids, matrix, default_weight, default_bias)
    assert weight.shape == (6, 2, 3, 3) and weight.dtype == np.float32
    assert bias.shape == (6,) and bias.dtype == np.float32
    assert not degenerate.any()
    np.testing.assert_allclose(filter_norms(weight), default_filter_norm(18), rtol=1e-5)
    assert (bias == 0).all()


def test_conv_with_folded_filters_is_the_whitened_response_scaled(fitted):
    """conv(x) = s_i * (c_i . W(x - m)) + s_i * c_i . W m, with s_i > 0 setting the norm."""
    images, mean, matrix, centroids, (default_weight, default_bias) = fitted
    weight, bias, _ = conv1_from_centroids(centroids, matrix, default_weight, default_bias)
    folded = centroids @ matrix
    scale = default_filter_norm(18) / np.linalg.norm(folded, axis=1)  # (6,)
    shift = folded @ mean  # c_i . W m
    x = torch.from_numpy(images[:3])
    out = F.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias)).numpy()  # (3, 6, 8, 8)
    padded = F.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias), padding=1).numpy()
    np.testing.assert_allclose(padded[:, :, 1:-1, 1:-1], out, atol=1e-5)
    for n, r, c in [(0, 0, 0), (1, 3, 5), (2, 7, 7), (2, 4, 1)]:
        patch = images[n, :, r : r + 3, c : c + 3].reshape(1, -1)
        whitened_response = apply_zca(patch, mean, matrix).astype(np.float64) @ centroids.T
        expected = scale * (whitened_response[0] + shift)
        np.testing.assert_allclose(out[n, :, r, c], expected, rtol=1e-4, atol=1e-4)


def test_degenerate_filter_keeps_the_default_init_and_is_counted():
    rng = np.random.default_rng(11)
    centroids = np.vstack([rng.standard_normal((2, 4)), np.zeros((1, 4))])
    default_weight, default_bias = default_conv(1, 3, seed=1)
    default_weight = default_weight[:, :, :2, :2].copy()  # a 2x2 conv: D = 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero
        weight, bias, degenerate = conv1_from_centroids(
            centroids, np.eye(4), default_weight, default_bias
        )
    assert weight.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(degenerate, [False, False, True])
    np.testing.assert_array_equal(weight[2], default_weight[2])
    assert bias[2] == default_bias[2] and (bias[:2] == 0).all()
    # Unwhitened: each filter is its centroid, scaled by a positive factor to the default norm.
    for i in range(2):
        ratio = weight[i].reshape(-1) / centroids[i]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
        assert ratio[0] > 0
    np.testing.assert_allclose(filter_norms(weight[:2]), default_filter_norm(4), rtol=1e-5)
    all_zero = conv1_from_centroids(np.zeros((3, 4)), np.eye(4), default_weight, default_bias)
    np.testing.assert_array_equal(all_zero[0], default_weight)
    assert all_zero[2].all()
    with pytest.raises(ValueError, match="centroids"):
        conv1_from_centroids(centroids[:, :3], np.eye(4), default_weight, default_bias)


def test_count_distinct_directions():
    rng = np.random.default_rng(18)
    a, b = rng.standard_normal((2, 9))
    assert count_distinct(np.stack([a, b, a, 3 * b, a + 1e-9])) == 2
    assert count_distinct(np.stack([a, -a])) == 2
    assert count_distinct(np.zeros((4, 1, 3, 3))) == 1
    assert count_distinct(rng.standard_normal((16, 1, 3, 3))) == 16


@pytest.fixture(scope="module")
def silhouette_patches():
    images = standardize(silhouettes(60, 16, seed=19))
    raw = sample_patches(images, size=3, per_image=20, max_images=60, seed=20)
    return images, prepare_patches(raw, min_std=0.1, whiten=True, epsilon=0.01)


def test_kmeans_conv1_has_default_norm_zero_bias_and_reports(silhouette_patches):
    _, prepared = silhouette_patches
    default_weight, default_bias = default_conv(1, 16, seed=0)
    init = kmeans_conv1(prepared.whitened, prepared.zca_matrix, default_weight, default_bias, 0)
    np.testing.assert_allclose(filter_norms(init.weight), default_filter_norm(9), rtol=1e-5)
    assert (init.bias == 0).all()
    assert init.distinct_filters == 16 and init.degenerate_filters == 0
    metrics = init.metrics(sampled=prepared.sampled, dropped_flat=prepared.dropped_flat)
    assert metrics == {
        "patches_sampled": 1200,
        "patches_dropped_flat": prepared.dropped_flat,
        "patches_clustered": 1200 - prepared.dropped_flat,
        "inertia": round(init.inertia, 4),
        "iterations": init.iterations,
        "distinct_filters": 16,
        "degenerate_filters": 0,
    }
    again = kmeans_conv1(prepared.whitened, prepared.zca_matrix, default_weight, default_bias, 0)
    np.testing.assert_array_equal(init.weight, again.weight)


def conv1_relative_change(conv1_weight: np.ndarray | None, images: np.ndarray, scale: float = 1.0):
    """conv1's ``||w_after - w_before|| / ||w_before||`` after 5 Adam steps on one batch.

    The classifier is the same seeded draw each call; ``conv1_weight`` (times ``scale``)
    replaces its conv1 weight and zeroes its bias, ``None`` keeps the default init.
    """
    torch.manual_seed(0)
    model = build_classifier(1, 16, 3, [16, 8], [0.0, 0.0], 16, 0.0)
    conv1 = model.encoder.blocks[0].conv
    with torch.no_grad():
        if conv1_weight is not None:
            conv1.weight.copy_(torch.from_numpy(conv1_weight) * scale)
            conv1.bias.zero_()
    before = conv1.weight.detach().clone()
    x = torch.from_numpy(images[:32])
    y = torch.arange(32) % 3
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return float((conv1.weight.detach() - before).norm() / before.norm())


def test_kmeans_conv1_learns_about_as_fast_as_the_default_init(silhouette_patches):
    """BatchNorm hides conv1's scale from the forward pass, not from Adam's step size.

    Adam moves each weight by about ``lr`` a step whatever its size, so conv1's relative
    change goes as 1 / its norm. Measured here: 0.93x random's with the default norm; filters
    rescaled to unit response variance (norms 1.7-2.4 on these images) gave 0.29x.
    """
    images, prepared = silhouette_patches
    torch.manual_seed(0)
    default = build_classifier(1, 16, 3, [16, 8], [0.0, 0.0], 16, 0.0).encoder.blocks[0].conv
    init = kmeans_conv1(
        prepared.whitened,
        prepared.zca_matrix,
        default.weight.detach().numpy(),
        default.bias.detach().numpy(),
        seed=0,
    )
    random_change = conv1_relative_change(None, images)
    kmeans_change = conv1_relative_change(init.weight, images)
    assert random_change / 2 < kmeans_change < 2 * random_change
    # The check can fail: filters 8x the default norm (the embedded data's unit-variance
    # rescale gave ~4.4 against ~0.58) learn about 8x more slowly.
    assert conv1_relative_change(init.weight, images, scale=8.0) < random_change / 2


def test_fewer_distinct_patches_than_clusters_is_reported():
    """k-means on 3 distinct points and 5 clusters repeats centroids: 3 distinct filters."""
    rng = np.random.default_rng(21)
    points = rng.standard_normal((3, 9))
    whitened = np.repeat(points, 10, axis=0)
    default_weight, default_bias = default_conv(1, 5, seed=0)
    init = kmeans_conv1(whitened, np.eye(9), default_weight, default_bias, seed=0)
    assert init.distinct_filters == 3 and init.degenerate_filters == 0
    directions = points / np.linalg.norm(points, axis=1, keepdims=True)
    flat = init.weight.reshape(5, 9) / default_filter_norm(9)
    for row in flat:  # every filter is one of the points' directions
        assert np.abs(directions - row).sum(axis=1).min() < 1e-5
    assert init.metrics(30, 0)["distinct_filters"] == 3


def test_fewer_patches_than_clusters_is_a_one_line_error():
    default_weight, default_bias = default_conv(1, 16, seed=0)
    whitened = np.random.default_rng(22).standard_normal((10, 9))
    with pytest.raises(DataError, match=r"kmeans\.clusters=16") as info:
        kmeans_conv1(whitened, np.eye(9), default_weight, default_bias, seed=0)
    message = str(info.value)
    assert "patches.min_std" in message and "10 non-flat patches" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- the stage


def test_kmeans_stage_metrics_checkpoint_and_seed(monkeypatch, tmp_path):
    """stages.kmeans on a patches folder: metrics keys, conv1 norm, the rest is --seed's draw."""
    monkeypatch.chdir(REPO)  # params.yaml
    monkeypatch.syspath_prepend(str(REPO))
    from initbench.params import load_params
    from stages.kmeans import main

    params = load_params()
    m = params.model
    images = silhouettes(4, 16, seed=23)
    meta = {"image_size": 16, "channels": 1, "mean": [0.3], "std": [0.4]}
    for split in ("train", "val", "test"):
        write_npy(tmp_path / "data" / f"{split}_images.npy", images)
        write_npy(tmp_path / "data" / f"{split}_labels.npy", np.array([0, 0, 1, 1]))
    write_json(tmp_path / "data" / "classes.json", ["a", "b"])
    write_json(tmp_path / "data" / "meta.json", meta)
    raw = sample_patches(standardize(silhouettes(60, 16, 24)), 3, 20, 60, seed=0)
    prepared = prepare_patches(raw, params.patches.min_std, True, params.patches.epsilon)
    folder = tmp_path / "patches"
    write_npy(folder / "whitened.npy", prepared.whitened)
    write_npy(folder / "zca_matrix.npy", prepared.zca_matrix)
    write_json(folder / "counts.json", {"sampled": 1200, "dropped_flat": prepared.dropped_flat})
    for seed in (5, 6):
        argv = ["kmeans", "--dataset", str(tmp_path / "data"), "--patches", str(folder),
                "--seed", str(seed), "--out", str(tmp_path / f"{seed}.pt"),
                "--report", str(tmp_path / f"{seed}.json")]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        run(main)
    metrics = json.loads((tmp_path / "5.json").read_text())
    assert set(metrics) == {"patches_sampled", "patches_dropped_flat", "patches_clustered",
                            "inertia", "iterations", "distinct_filters", "degenerate_filters"}  # fmt: skip
    assert metrics["patches_sampled"] == 1200
    assert metrics["patches_clustered"] == 1200 - metrics["patches_dropped_flat"] > 0
    assert metrics["distinct_filters"] == m.channels[0] and metrics["degenerate_filters"] == 0
    state = read_checkpoint(tmp_path / "5.pt")["encoder"]
    np.testing.assert_allclose(
        filter_norms(state["blocks.0.conv.weight"].numpy()), default_filter_norm(9), rtol=1e-5
    )
    assert (state["blocks.0.conv.bias"] == 0).all()
    expected = seeded_encoder(1, m.channels, m.dropout, seed=5).state_dict()
    for key, tensor in state.items():  # every layer but conv1 is --seed's default init
        if not key.startswith("blocks.0.conv."):
            assert torch.equal(tensor, expected[key]), key
    other = read_checkpoint(tmp_path / "6.pt")["encoder"]
    assert not torch.equal(other["blocks.1.conv.weight"], state["blocks.1.conv.weight"])
