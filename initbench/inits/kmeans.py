"""First-layer conv filters from k-means centroids of whitened patches.

Filters are the k-means centroids of ZCA-whitened, contrast-normalized patches
(Coates, Lee & Ng 2011, "An analysis of single-layer networks in unsupervised
feature learning"; Coates & Ng 2011, "The importance of encoding versus training
with sparse coding and vector quantization"; Coates & Ng 2012, "Learning feature
representations with K-means"), with the whitening folded into the weights.

Only each filter's direction comes from k-means. Its length is the one PyTorch's
default ``Conv2d`` init gives a filter (:func:`default_filter_norm`), and its
bias is 0: BatchNorm follows conv1, so the forward pass does not see the scale,
but Adam's steps have a fixed size per weight, so a filter k times longer than
the default init's learns about k times more slowly relative to its size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from initbench.core.errors import DataError
from initbench.models.cnn import Encoder, seeded_encoder

# k-means++ restarts; the best inertia wins. Cheap for 3x3 patches, steadier than sklearn's 1.
N_INIT = 3
# A folded filter shorter than this fraction of the longest one (or not finite) is degenerate,
# e.g. from a zero centroid: it has no direction to keep, so its slot keeps the default init.
DEGENERATE_RELATIVE_NORM = 1e-6
# Two unit-length filter directions closer than this are the same filter.
DISTINCT_TOLERANCE = 1e-4


def kmeans_centroids(data: np.ndarray, clusters: int, seed: int) -> tuple[np.ndarray, float, int]:
    """K-means (``sklearn.cluster.KMeans``, k-means++, ``N_INIT`` restarts) on ``data``.

    With fewer distinct rows than ``clusters``, some centroids are duplicates;
    sklearn's warning about it is silenced here, count them with :func:`count_distinct`.

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # "distinct clusters found smaller"
        model = KMeans(n_clusters=clusters, n_init=N_INIT, random_state=seed).fit(data)
    return model.cluster_centers_.astype(np.float64), float(model.inertia_), int(model.n_iter_)


def default_filter_norm(fan_in: int) -> float:
    """Root-mean-square length of one filter under PyTorch's default ``Conv2d`` init.

    ``Conv2d.reset_parameters`` draws ``kaiming_uniform_(a=sqrt(5))`` (He et al. 2015):
    ``U(-b, b)`` with ``b = gain * sqrt(3 / fan_in)`` and ``gain = sqrt(2 / (1 + a^2))``,
    so ``b = 1 / sqrt(fan_in)``. Each weight has variance ``b^2 / 3``; a filter of
    ``fan_in`` weights has ``E ||w||^2 = fan_in * b^2 / 3`` (``1/3``, whatever ``fan_in``).

    Returns:
        ``sqrt(E ||w||^2)``, about 0.577.

    Raises:
        ValueError: ``fan_in < 1``.
    """
    if fan_in < 1:
        raise ValueError(f"fan_in is {fan_in}; it must be at least 1")
    a = math.sqrt(5)
    gain = math.sqrt(2 / (1 + a * a))
    bound = gain * math.sqrt(3 / fan_in)
    return math.sqrt(fan_in * bound**2 / 3)


def conv1_from_centroids(
    centroids: np.ndarray,
    zca_matrix: np.ndarray,
    default_weight: np.ndarray,
    default_bias: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conv weight and bias whose response to a raw patch is its centroid's, up to scale and shift.

    A centroid ``c`` lives in whitened space; its response to a patch ``x`` is
    ``c . W(x - m) = (W^T c) . x - c . W m``, so the filter is ``w = W^T c``
    (without whitening, pass ``W = I``). The conv cannot normalize contrast per
    window, so this is the response to the un-normalized patch. Each ``w`` is
    scaled to :func:`default_filter_norm` of ``fan_in = C * kh * kw``, and the
    bias is 0 (BatchNorm follows, so the shift ``-c . W m`` would not matter).

    A degenerate filter (``||W^T c||`` at most ``DEGENERATE_RELATIVE_NORM`` times
    the longest one's, e.g. a zero centroid, or not finite) has no direction:
    its slot keeps ``default_weight`` and ``default_bias``, never a division by ~0.

    Args:
        centroids: ``(k, D)`` with ``D = C * kh * kw``.
        zca_matrix: ``(D, D)``, from :func:`initbench.inits.patches.fit_zca` (identity without).
        default_weight: ``(k, C, kh, kw)``, the seeded default init of the conv (its shape
            sets the output's); default_bias: ``(k,)``.

    Returns:
        ``(weight, bias, degenerate)``: float32 ``(k, C, kh, kw)`` and ``(k,)``, ready for
        ``Conv2d.weight`` and ``.bias``, and bool ``(k,)``, True where the default init was kept.

    Raises:
        ValueError: the shapes do not agree.
    """
    default_weight = np.asarray(default_weight, dtype=np.float32)
    default_bias = np.asarray(default_bias, dtype=np.float32)
    centroids = np.asarray(centroids, dtype=np.float64)
    zca_matrix = np.asarray(zca_matrix, dtype=np.float64)
    if default_weight.ndim != 4:
        raise ValueError(
            f"default_weight has shape {default_weight.shape}; pass a Conv2d weight (k, C, kh, kw)"
        )
    k = default_weight.shape[0]
    dim = math.prod(default_weight.shape[1:])
    if centroids.shape != (k, dim):
        raise ValueError(
            f"centroids has shape {centroids.shape}; a conv of weight "
            f"{tuple(default_weight.shape)} needs ({k}, {dim})"
        )
    if zca_matrix.shape != (dim, dim) or default_bias.shape != (k,):
        raise ValueError(
            f"zca_matrix is {zca_matrix.shape} and default_bias {default_bias.shape}; need "
            f"({dim}, {dim}) (identity when whitening is off) and ({k},)"
        )
    folded = centroids @ zca_matrix  # row i: (W^T c_i)^T, W symmetric
    norms = np.linalg.norm(folded, axis=1)
    finite = np.isfinite(folded).all(axis=1)
    longest = norms[finite].max(initial=0.0)
    degenerate = ~finite | (norms <= DEGENERATE_RELATIVE_NORM * longest)
    scale = np.divide(default_filter_norm(dim), norms, out=np.zeros_like(norms), where=~degenerate)
    weight = np.where(degenerate[:, None], 0.0, folded) * scale[:, None]  # no NaN carried over
    weight[degenerate] = default_weight.reshape(k, dim)[degenerate]
    bias = np.where(degenerate, default_bias, 0.0)
    return (
        weight.reshape(default_weight.shape).astype(np.float32),
        bias.astype(np.float32),
        degenerate,
    )


def count_distinct(filters: np.ndarray, tolerance: float = DISTINCT_TOLERANCE) -> int:
    """How many different filters ``filters`` holds, comparing unit-length directions.

    Two filters are the same when their directions differ by at most ``tolerance``
    in Euclidean norm, so duplicate k-means centroids (and centroids that are
    positive multiples of each other) count once. All-zero filters count as one.

    Args:
        filters: ``(k, ...)``.

    Returns:
        An int in ``[min(k, 1), k]``.
    """
    rows = np.asarray(filters, dtype=np.float64).reshape(len(filters), -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    directions = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    kept: list[np.ndarray] = []
    for direction in directions:
        if all(np.linalg.norm(direction - other) > tolerance for other in kept):
            kept.append(direction)
    return len(kept)


@dataclass(frozen=True)
class KmeansInit:
    """conv1's k-means init and what went into it, from :func:`kmeans_conv1`."""

    weight: np.ndarray  # float32 (k, C, kh, kw)
    bias: np.ndarray  # float32 (k,)
    inertia: float  # k-means sum of squared distances to the nearest centroid
    iterations: int  # Lloyd iterations of the best k-means run
    distinct_filters: int  # count_distinct(weight); below k when centroids repeat
    degenerate_filters: int  # slots that kept the default init (see conv1_from_centroids)
    clustered: int  # patches k-means saw

    def metrics(self, sampled: int, dropped_flat: int) -> dict[str, int | float]:
        """The ``metrics/kmeans.json`` content, given the patches stage's counts.

        Returns:
            ``{"patches_sampled", "patches_dropped_flat", "patches_clustered", "inertia",
            "iterations", "distinct_filters", "degenerate_filters"}``.
        """
        return {
            "patches_sampled": int(sampled),
            "patches_dropped_flat": int(dropped_flat),
            "patches_clustered": self.clustered,
            "inertia": round(self.inertia, 4),
            "iterations": self.iterations,
            "distinct_filters": self.distinct_filters,
            "degenerate_filters": self.degenerate_filters,
        }


def kmeans_conv1(
    whitened: np.ndarray,
    zca_matrix: np.ndarray,
    default_weight: np.ndarray,
    default_bias: np.ndarray,
    seed: int,
) -> KmeansInit:
    """conv1 from k-means on ``whitened`` patches, one centroid per output channel.

    Args:
        whitened: ``(M, D)`` from :func:`initbench.inits.patches.prepare_patches` (flat patches
            already dropped). zca_matrix, default_weight, default_bias: as
            :func:`conv1_from_centroids`; ``k = default_weight.shape[0]`` clusters.
        seed: k-means ``random_state``.

    Returns:
        A :class:`KmeansInit`.

    Raises:
        DataError: fewer patches than clusters (flat patches are dropped before this).
        ValueError: as :func:`conv1_from_centroids`.
    """
    whitened = np.asarray(whitened)
    clusters = int(np.shape(default_weight)[0])
    if whitened.ndim == 2 and len(whitened) < clusters:
        raise DataError(
            f"{len(whitened)} non-flat patches to cluster, fewer than kmeans.clusters={clusters}; "
            "lower patches.min_std or raise patches.per_image or patches.max_images"
        )
    centroids, inertia, iterations = kmeans_centroids(whitened, clusters, seed)
    weight, bias, degenerate = conv1_from_centroids(
        centroids, zca_matrix, default_weight, default_bias
    )
    return KmeansInit(
        weight=weight,
        bias=bias,
        inertia=inertia,
        iterations=iterations,
        distinct_filters=count_distinct(weight),
        degenerate_filters=int(degenerate.sum()),
        clustered=len(whitened),
    )


def kmeans_encoder(
    in_channels: int,
    channels: Sequence[int],
    dropout: Sequence[float],
    whitened: np.ndarray,
    zca_matrix: np.ndarray,
    seed: int,
) -> tuple[Encoder, KmeansInit]:
    """The k-means init's encoder: the seeded encoder of ``random``
    (:func:`~initbench.models.cnn.seeded_encoder`) with conv1 replaced by
    :func:`kmeans_conv1` of ``whitened``, so a comparison with ``random`` isolates conv1.

    Raises:
        DataError, ValueError: as :func:`kmeans_conv1`.
    """
    encoder = seeded_encoder(in_channels, channels, dropout, seed)
    conv1 = encoder.blocks[0].conv
    init = kmeans_conv1(whitened, zca_matrix, conv1.weight.detach().numpy(),
                        conv1.bias.detach().numpy(), seed)  # fmt: skip
    with torch.no_grad():
        conv1.weight.copy_(torch.from_numpy(init.weight))
        conv1.bias.copy_(torch.from_numpy(init.bias))
    return encoder, init
