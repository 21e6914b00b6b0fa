"""First-layer conv filters from k-means centroids of whitened patches.

Filters are the k-means centroids of ZCA-whitened, contrast-normalized patches
(Coates, Lee & Ng 2011, "An analysis of single-layer networks in unsupervised
feature learning"; Coates & Ng 2011, "The importance of encoding versus training
with sparse coding and vector quantization"), with the whitening folded into the
weights and bias, then rescaled so each filter's responses have zero mean and
unit variance on sample patches, as in the data-dependent initialization of
Krähenbühl, Doersch, Donahue & Darrell (2016), "Data-dependent initializations
of convolutional neural networks" (ICLR).
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

# k-means++ restarts; the best inertia wins. Cheap for 3x3 patches, steadier than sklearn's 1.
N_INIT = 3
# A filter whose response std is below this fraction of ||w|| * (total patch std) is
# degenerate (e.g. a zero centroid): it is centered but not rescaled.
_DEGENERATE_STD = 1e-6


def kmeans_centroids(data: np.ndarray, clusters: int, seed: int) -> tuple[np.ndarray, float, int]:
    """K-means (``sklearn.cluster.KMeans``, k-means++, ``N_INIT`` restarts) on ``data``.

    Args:
        data: ``(M, D)``, e.g. whitened patches; clustered in float64.

    Returns:
        ``(centroids, inertia, n_iter)``: float64 ``(clusters, D)``, the best run's sum of
        squared distances to the nearest centroid, and its number of Lloyd iterations.

    Raises:
        ValueError: ``data`` is not 2-D, ``clusters < 1``, or fewer samples than clusters.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"data has shape {data.shape}; pass an (M, D) array, one sample a row")
    if clusters < 1:
        raise ValueError(f"clusters is {clusters}; it must be at least 1")
    if len(data) < clusters:
        raise ValueError(
            f"data has {len(data)} sample(s) but clusters is {clusters}; sample more patches "
            "or ask for fewer clusters"
        )
    model = KMeans(n_clusters=clusters, n_init=N_INIT, random_state=seed).fit(data)
    return model.cluster_centers_.astype(np.float64), float(model.inertia_), int(model.n_iter_)


def conv1_from_centroids(
    centroids: np.ndarray,
    zca_mean: np.ndarray,
    zca_matrix: np.ndarray,
    patches: np.ndarray,
    channels: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias whose response to a raw patch is its centroid's, rescaled.

    A centroid ``c`` lives in whitened space; its response to a patch ``x`` is
    ``c . W(x - m) = (W^T c) . x - c . W m``, so ``w = W^T c`` and ``b = -c . W m``
    (without whitening, pass ``W = I`` and ``m = 0``). The conv cannot normalize
    contrast per window, so this is the response to the un-normalized patch.
    Then each filter is rescaled so its responses on ``patches`` have mean 0 and
    variance 1 (Krähenbühl et al. 2016). A degenerate filter (response std below
    ``1e-6 * ||w|| *`` the patches' total std, e.g. a zero centroid) is only
    centered, never divided by ~0.

    Args:
        centroids: ``(k, D)`` with ``D = channels * size * size``.
        zca_mean: ``(D,)``; zca_matrix: ``(D, D)``, from :func:`initbench.patches.fit_zca`.
        patches: ``(M, D)``, ``M >= 2``: raw patches in the conv's input space (normalized
            images, not contrast-normalized, not whitened), flattened ``(C, kh, kw)``.

    Returns:
        ``(weight, bias)``: float32 ``(k, channels, size, size)`` and ``(k,)``, ready for
        ``Conv2d(channels, k, size).weight`` and ``.bias``.

    Raises:
        ValueError: the shapes do not agree with each other or with ``channels * size * size``.
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    zca_mean = np.asarray(zca_mean, dtype=np.float64)
    zca_matrix = np.asarray(zca_matrix, dtype=np.float64)
    patches = np.asarray(patches, dtype=np.float64)
    dim = channels * size * size
    if centroids.ndim != 2 or centroids.shape[1] != dim:
        raise ValueError(
            f"centroids has shape {centroids.shape}; a {channels}-channel {size}x{size} conv "
            f"needs (k, {dim})"
        )
    if zca_mean.shape != (dim,) or zca_matrix.shape != (dim, dim):
        raise ValueError(
            f"zca_mean is {zca_mean.shape} and zca_matrix {zca_matrix.shape}; need ({dim},) and "
            f"({dim}, {dim}) (identity and zeros when whitening is off)"
        )
    if patches.ndim != 2 or patches.shape[1] != dim or len(patches) < 2:
        raise ValueError(
            f"patches has shape {patches.shape}; pass at least 2 raw patches as an (M, {dim}) array"
        )
    weight, bias = _fold_whitening(centroids, zca_mean, zca_matrix)
    responses = patches @ weight.T + bias  # (M, k)
    mean = responses.mean(axis=0)
    std = responses.std(axis=0)
    reachable = np.linalg.norm(weight, axis=1) * np.sqrt(patches.var(axis=0).sum())
    healthy = std > _DEGENERATE_STD * reachable
    scale = np.divide(1.0, std, out=np.ones_like(std), where=healthy)
    weight = weight * scale[:, None]
    bias = (bias - mean) * scale
    k = len(centroids)
    return (
        weight.reshape(k, channels, size, size).astype(np.float32),
        bias.astype(np.float32),
    )


def _fold_whitening(
    centroids: np.ndarray, zca_mean: np.ndarray, zca_matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(w, b)``, float64 ``(k, D)`` and ``(k,)``, with ``x @ w.T + b == ((x - m) @ W) @ c.T``."""
    weight = centroids @ zca_matrix  # row i: (W^T c_i)^T
    return weight, -(weight @ zca_mean)
