"""Random image patches, flat-patch removal, per-patch contrast normalization and ZCA whitening.

The preprocessing of Coates, Lee & Ng (2011), "An analysis of single-layer
networks in unsupervised feature learning" (AISTATS), also used by Coates & Ng
(2011), "The importance of encoding versus training with sparse coding and
vector quantization" (ICML), and laid out in Coates & Ng (2012), "Learning
feature representations with K-means" (Neural Networks: Tricks of the Trade):
sample small patches, normalize each patch's brightness and contrast, whiten
the set with ZCA, then cluster. Patches with (almost) no contrast are dropped
first (:func:`drop_flat`): contrast normalization cannot give them a direction,
and on silhouette images they are about half of all patches, enough for k-means
to spend a centroid on them.

A patch is flattened in ``(C, kh, kw)`` order, the order of the last three dims
of a ``Conv2d`` weight, so ``patch @ weight.reshape(k, -1).T`` is the conv's
response at that window. Everything here is pure numpy; randomness comes only
from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from initbench.core.errors import DataError

# Coates & Ng add 10 to the patch variance for 0..255 pixels; for pixels standardized by
# a channel std sigma (0..1 scale) that is 10 / (255 * sigma)**2, about 1.7e-3 to 3.8e-3 for
# sigma in 0.2..0.3. 0.01 (1% of unit pixel variance) is a bit stronger, so flat patches
# (background, JPEG noise of a few grey levels) are not blown up to unit contrast.
CONTRAST_EPS = 0.01


def patch_positions(
    n_images: int, height: int, width: int, size: int, per_image: int, max_images: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where :func:`sample_patches` cuts its patches, from ``seed``.

    The images are the first ``min(n_images, max_images)`` of a seeded
    permutation of ``range(n_images)``; each gives ``per_image`` top-left corners
    drawn uniformly among the valid (unpadded) positions.

    Returns:
        ``(image, row, col)``: int64 ``(M,)`` each, ``M = min(n_images, max_images) * per_image``,
        image-major (all patches of the first chosen image, then the next, ...).

    Raises:
        ValueError: a count is below 1, or ``size`` does not fit in ``height x width``.
    """
    for name, value in (
        ("n_images", n_images),
        ("size", size),
        ("per_image", per_image),
        ("max_images", max_images),
    ):
        if value < 1:
            raise ValueError(f"{name} is {value}; it must be at least 1")
    if size > height or size > width:
        raise ValueError(
            f"size {size} does not fit in {height}x{width} images; use a patch size of at most "
            f"{min(height, width)}"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(n_images)[: min(n_images, max_images)]
    rows = rng.integers(0, height - size + 1, size=(len(chosen), per_image))
    cols = rng.integers(0, width - size + 1, size=(len(chosen), per_image))
    return np.repeat(chosen, per_image).astype(np.int64), rows.ravel(), cols.ravel()


def sample_patches(
    images: np.ndarray, size: int, per_image: int, max_images: int, seed: int
) -> np.ndarray:
    """Random ``size x size`` patches of ``images``, cut where :func:`patch_positions` says.

    Args:
        images: float ``(N, C, H, W)``, in the space the conv sees (normalized).

    Returns:
        float32 ``(M, C * size * size)``, each row flattened in ``(C, kh, kw)`` order,
        ``M = min(N, max_images) * per_image``.

    Raises:
        ValueError: ``images`` is not ``(N, C, H, W)`` with ``N >= 1``, or as :func:`patch_positions`.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"images has shape {images.shape}; pass an (N, C, H, W) array (add a channel axis "
            "for grayscale)"
        )
    n, channels, height, width = images.shape
    image, row, col = patch_positions(n, height, width, size, per_image, max_images, seed)
    # (N, C, H - size + 1, W - size + 1, size, size): a view, nothing is copied here.
    windows = sliding_window_view(images, (size, size), axis=(2, 3))
    # Advanced indices around a slice: the indexed axis comes first -> (M, C, size, size).
    patches = windows[image, :, row, col]
    return patches.reshape(len(image), channels * size * size).astype(np.float32)


def patch_std(patches: np.ndarray) -> np.ndarray:
    """Each patch's (population) std over all its values, channels included.

    Args:
        patches: ``(M, D)``.

    Returns:
        float64 ``(M,)``.

    Raises:
        ValueError: ``patches`` is not 2-D.
    """
    return _as_patch_matrix(patches).astype(np.float64).std(axis=1)


def drop_flat(patches: np.ndarray, min_std: float) -> np.ndarray:
    """The patches whose std (:func:`patch_std`) is above ``min_std``, in their order.

    A patch with std ``<= min_std`` is flat: background, or a few grey levels of
    resampling noise. ``min_std = 0`` drops only constant patches, which contrast
    normalization maps to all zeros. ``sqrt(CONTRAST_EPS) = 0.1`` drops the patches
    that :func:`normalize_contrast` shrinks by more than ``1/sqrt(2)``; on the
    embedded silhouettes (1 grey level = 0.01) k-means still spends a centroid of
    near-zero norm on low-contrast patches at 0.005, none from 0.01 up.

    Args:
        patches: ``(M, D)``, in the space the conv sees (standardized pixels).
        min_std: threshold in the same units as the patch values.

    Returns:
        ``(K, D)``, ``K <= M``, same dtype: the kept rows.

    Raises:
        ValueError: ``patches`` is not 2-D, or ``min_std`` is negative or not finite.
        DataError: fewer than 2 patches are left (nothing to whiten or cluster).
    """
    patches = _as_patch_matrix(patches)
    if not (min_std >= 0 and np.isfinite(min_std)):
        raise ValueError(f"min_std is {min_std}; pass a finite value >= 0")
    kept = patches[patch_std(patches) > min_std]
    if len(kept) < 2:
        raise DataError(
            f"{len(kept)} of {len(patches)} sampled patches have std above "
            f"patches.min_std={min_std:g} (the rest are flat); lower patches.min_std, raise "
            "patches.per_image or patches.max_images, or check that the images are not blank"
        )
    return kept


@dataclass(frozen=True)
class PreparedPatches:
    """What k-means needs, from :func:`prepare_patches`. ``K`` kept patches of ``D`` values."""

    kept: np.ndarray  # float32 (K, D): raw patches that are not flat, in the conv's input space
    whitened: np.ndarray  # float32 (K, D): contrast-normalized, then ZCA-whitened
    zca_mean: np.ndarray  # float32 (D,): zeros without whitening
    zca_matrix: np.ndarray  # float32 (D, D): identity without whitening
    sampled: int  # M, patches before dropping flat ones
    dropped_flat: int  # M - K


def prepare_patches(
    raw: np.ndarray, min_std: float, whiten: bool, epsilon: float
) -> PreparedPatches:
    """Drop flat patches, normalize contrast, fit and apply ZCA on the kept ones only.

    Args:
        raw: ``(M, D)`` from :func:`sample_patches`.
        min_std: see :func:`drop_flat`. whiten, epsilon: see :func:`fit_zca`.

    Returns:
        A :class:`PreparedPatches`.

    Raises:
        ValueError, DataError: as :func:`drop_flat` and :func:`fit_zca`.
    """
    raw = _as_patch_matrix(raw)
    kept = drop_flat(raw, min_std).astype(np.float32)
    normalized = normalize_contrast(kept)
    dim = raw.shape[1]
    if whiten:
        mean, matrix = fit_zca(normalized, epsilon)
    else:
        mean, matrix = np.zeros(dim), np.eye(dim)
    # Rounded to float32 before use: the last float64 bits of a covariance and its eigh depend
    # on the BLAS kernels a CPU is given (OpenBLAS dispatches by CPU model); float32 ones do
    # not, so the patches stage writes the same bytes on any x86-64 machine (README).
    mean, matrix = mean.astype(np.float32), matrix.astype(np.float32)
    return PreparedPatches(
        kept=kept,
        whitened=apply_zca(normalized, mean, matrix),
        zca_mean=mean,
        zca_matrix=matrix,
        sampled=len(raw),
        dropped_flat=len(raw) - len(kept),
    )


def normalize_contrast(patches: np.ndarray, eps: float = CONTRAST_EPS) -> np.ndarray:
    """Subtract each patch's mean and divide by ``sqrt(var + eps)`` (Coates & Ng 2011).

    Mean and (population) variance are over all of a patch's values, channels
    included. ``eps`` keeps near-flat patches from being amplified to unit
    contrast; see :data:`CONTRAST_EPS` for the default's scale.

    Args:
        patches: ``(M, D)``.

    Returns:
        float32 ``(M, D)``; every row has mean 0.

    Raises:
        ValueError: ``patches`` is not 2-D, or ``eps`` is negative.
    """
    patches = _as_patch_matrix(patches)
    if not eps >= 0:
        raise ValueError(f"eps is {eps}; pass a non-negative value such as {CONTRAST_EPS}")
    x = patches.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.sqrt(x.var(axis=1, keepdims=True) + eps)
    return x.astype(np.float32)


def fit_zca(patches: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening fitted on ``patches`` (Coates, Lee & Ng 2011).

    With the patch covariance ``C = U diag(S) U^T`` (``ddof=1``), the matrix is
    ``U diag(1 / sqrt(S + epsilon)) U^T``: symmetric, and whitened data stays as
    close as possible to the input. ``epsilon`` bounds the gain of low-variance
    directions (including the constant direction that :func:`normalize_contrast`
    removes). Computed in float64.

    Args:
        patches: ``(M, D)`` with ``M >= 2``.

    Returns:
        ``(mean, matrix)``: float64 ``(D,)`` and ``(D, D)``.

    Raises:
        ValueError: ``patches`` is not 2-D, has fewer than 2 rows or non-finite values;
            ``epsilon`` is not positive.
    """
    patches = _as_patch_matrix(patches)
    if len(patches) < 2:
        raise ValueError(f"patches has {len(patches)} row(s); sample at least 2 to fit ZCA")
    if not epsilon > 0 or not np.isfinite(epsilon):
        raise ValueError(f"epsilon is {epsilon}; pass a positive value such as 0.1")
    x = patches.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("patches has NaN or infinite values; check the images they came from")
    mean = x.mean(axis=0)
    x -= mean
    covariance = x.T @ x / (len(x) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    gains = 1.0 / np.sqrt(np.clip(eigenvalues, 0.0, None) + epsilon)
    matrix = (eigenvectors * gains) @ eigenvectors.T
    return mean, (matrix + matrix.T) / 2  # exactly symmetric


def apply_zca(patches: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Whiten ``patches``: ``(patches - mean) @ matrix``, ``matrix`` from :func:`fit_zca`.

    Args:
        patches: ``(M, D)``; mean: ``(D,)``; matrix: symmetric ``(D, D)``.

    Returns:
        float32 ``(M, D)``.

    Raises:
        ValueError: the shapes do not agree.
    """
    patches = _as_patch_matrix(patches)
    dim = patches.shape[1]
    if np.shape(mean) != (dim,) or np.shape(matrix) != (dim, dim):
        raise ValueError(
            f"patches have {dim} features but mean is {np.shape(mean)} and matrix "
            f"{np.shape(matrix)}; pass the fit_zca result for patches of this size"
        )
    whitened = (patches.astype(np.float64) - mean) @ np.asarray(matrix, dtype=np.float64)
    return whitened.astype(np.float32)


def _as_patch_matrix(patches: np.ndarray) -> np.ndarray:
    patches = np.asarray(patches)
    if patches.ndim != 2:
        raise ValueError(
            f"patches has shape {patches.shape}; pass an (M, D) array, one flattened patch a row"
        )
    return patches
