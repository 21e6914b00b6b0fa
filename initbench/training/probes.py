"""Evaluating a frozen encoder: precise BatchNorm, features, the kNN probe and the linear probe.

Every evaluation of a frozen encoder first recomputes its BatchNorm running statistics on
unlabelled train images (:func:`recalibrate_batchnorm`), for every init alike. Without it,
a random or k-means encoder carries BatchNorm's defaults (mean 0, variance 1), its block
outputs shrink layer by layer in eval mode, and it is compared on unequal terms with
pretrained encoders whose statistics were fitted to the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from initbench.data.transforms import Normalize
from initbench.training.loop import EVAL_BATCH_SIZE

KNN_NEIGHBORS = 20
#: Precise BatchNorm reads at most this many train images (a fixed seeded sample).
RECALIBRATION_IMAGES = 10_000


@torch.no_grad()
def recalibrate_batchnorm(
    encoder: nn.Module,
    normalize: Normalize,
    images: torch.Tensor,
    device: torch.device,
    max_images: int = RECALIBRATION_IMAGES,
) -> None:
    """Recompute every BatchNorm's running mean and variance on ``images``, in place.

    "Precise BN" (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", Sec. 3): the
    statistics are reset, then averaged with equal weight over batches of
    :data:`EVAL_BATCH_SIZE` images drawn in a fixed shuffled order (so a batch is not one
    class), with BatchNorm in train mode and everything else (dropout) in eval mode. A
    short last batch is left out when there are several, so every batch weighs the same.
    No weight changes. The encoder is left in eval mode.

    Args:
        images: uint8 ``(N, C, H, W)`` unlabelled train images; at most ``max_images`` of
            them are used, a sample drawn with a fixed seed.

    Raises:
        ValueError: ``images`` is empty.
    """
    if len(images) == 0:
        raise ValueError("recalibrate_batchnorm needs at least one image")
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    encoder.eval()
    if not norms:
        return
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    order = order[:max_images]
    if len(order) > EVAL_BATCH_SIZE:
        order = order[: len(order) // EVAL_BATCH_SIZE * EVAL_BATCH_SIZE]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    try:
        for start in range(0, len(order), EVAL_BATCH_SIZE):
            encoder(normalize(images[order[start : start + EVAL_BATCH_SIZE]].to(device)))
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        encoder.eval()


@torch.no_grad()
def encode(
    encoder: nn.Module, normalize: Normalize, images: torch.Tensor, device: torch.device
) -> np.ndarray:
    """Flattened features of uint8 ``(N, C, H, W)`` images, in eval mode: float32 ``(N, D)``."""
    encoder.eval()
    features = [
        encoder(normalize(images[start : start + EVAL_BATCH_SIZE].to(device))).flatten(1).cpu()
        for start in range(0, len(images), EVAL_BATCH_SIZE)
    ]
    return torch.cat(features).numpy()


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    neighbors: int = KNN_NEIGHBORS,
) -> float:
    """kNN probe (Wu et al. 2018): majority vote of the ``neighbors`` nearest train
    features by cosine distance (at most the train size), scored on the eval features.

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)``; eval_features: ``(M, D)``;
            eval_labels: ``(M,)``.

    Returns:
        Accuracy in [0, 1].
    """
    k = min(neighbors, len(train_features))
    probe = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    probe.fit(train_features, train_labels)
    return float(probe.score(eval_features, eval_labels))


@dataclass
class ProbeResult:
    accuracy: float
    macro_f1: float
    iterations: int  # L-BFGS iterations
    converged: bool
    predictions: np.ndarray  # int64 (M,): the predicted class of each test image
    C: float  # the inverse L2 strength used
    cv_folds: int  # the folds that chose it; 0: one candidate, or too few labels to fold


def choose_C(
    features: np.ndarray, labels: np.ndarray, Cs: Sequence[float], folds: int, seed: int,
    max_iter: int,
) -> tuple[float, int]:  # fmt: skip
    """Choose C by stratified k-fold cross-validation on the labelled subset alone (mean
    accuracy, the first of equals in ``Cs`` order): a hyperparameter chosen on labels the
    run has, never on test labels.

    ``folds`` drops to the smallest class's size when that is fewer; below 2 there is no
    cross-validation and the middle of ``Cs`` (sorted) is used.

    Returns:
        ``(C, folds used)``; ``folds used`` is 0 when nothing was cross-validated.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    candidates = sorted(Cs)
    folds = min(folds, int(np.bincount(labels)[np.unique(labels)].min()))
    if len(candidates) == 1 or folds < 2:
        return candidates[len(candidates) // 2], 0
    search = GridSearchCV(
        _probe(candidates[0], max_iter), {"logisticregression__C": candidates},
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="accuracy",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(features, labels)
    return float(search.best_params_["logisticregression__C"]), folds


def _probe(C: float, max_iter: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    Cs: Sequence[float],  # scikit-learn's name
    max_iter: int,
    cv_folds: int = 5,
    seed: int = 0,
) -> ProbeResult:
    """Linear probe: multinomial logistic regression (L-BFGS, L2 penalty ``1 / C``) on
    features standardized with the train features' mean and std, a fixed affine map, so
    the classifier stays one linear layer. C is chosen among ``Cs`` by cross-validation on
    the train (labelled) features only (:func:`choose_C`, folds seeded by ``seed``).

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)`` with at least 2 classes;
        test_features: ``(M, D)``; test_labels: ``(M,)``.

    Returns:
        Test accuracy, macro-F1 and predictions, the C used and its folds, and whether
        L-BFGS converged within ``max_iter``.

    Raises:
        ValueError: fewer than 2 classes among ``train_labels``.
    """
    if len(np.unique(train_labels)) < 2:
        raise ValueError("a linear probe needs train labels of at least 2 classes")
    C, folds = choose_C(train_features, train_labels, Cs, cv_folds, seed, max_iter)
    model = _probe(C, max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as `converged`
        model.fit(train_features, train_labels)
    predicted = model.predict(test_features)
    iterations = int(np.max(model[-1].n_iter_))
    return ProbeResult(
        accuracy=float(np.mean(predicted == test_labels)),
        macro_f1=float(f1_score(test_labels, predicted, average="macro")),
        iterations=iterations,
        converged=iterations < max_iter,
        predictions=predicted.astype(np.int64),
        C=C,
        cv_folds=folds,
    )
