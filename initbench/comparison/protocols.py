"""The two ways an init is judged: fine-tuning the whole classifier, and a linear probe.

Both start from an init checkpoint and a seed. For one seed, every init gets the same
label subset (:func:`initbench.data.split.label_subset`, nested across fractions), the same head
init, the same data order and the same dropout masks, so results are paired by seed and
differences between inits are not confounded with draws of those. Test accuracy is
measured once, on the final weights (no selection on labelled val images).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from initbench.comparison.grid import PROTOCOLS, run_seed
from initbench.core.errors import ParamsError
from initbench.data.dataset import ArrayData, Split
from initbench.data.split import floor_warning, identical_subsets, label_subset, subset_sizes
from initbench.data.transforms import Normalize
from initbench.models.cnn import Classifier, build_classifier
from initbench.models.transfer import encoder_meta, load_init
from initbench.params import FinetuneParams, LinearProbeParams, ModelParams, Params
from initbench.training.plateau import Plateau
from initbench.training.probes import ProbeResult, encode, linear_probe, recalibrate_batchnorm
from initbench.training.setup import set_seed
from initbench.training.supervised import Evaluation, evaluate, fit


def classifier_from_init(
    data: ArrayData, init_path: str | os.PathLike[str], model: ModelParams, seed: int
) -> Classifier:
    """The classifier with its encoder loaded from ``init_path`` and its head drawn from
    ``seed``. The global RNG is seeded first, so the head and the dropout masks that follow
    are the same for every init at one seed.

    Raises:
        CheckpointError: the checkpoint is missing, unreadable or made for other params.
    """
    set_seed(seed)
    classifier = build_classifier(data.channels, data.image_size, len(data.classes),
                                  model.channels, model.dropout, model.hidden,
                                  model.head_dropout)  # fmt: skip
    load_init(classifier, init_path, encoder_meta(data.channels, model.channels, data.image_size))
    return classifier


def labelled_train(data: ArrayData, label_fraction: float, seed: int) -> tuple[Split, torch.Tensor]:
    """The stratified ``label_fraction`` of the train split whose images and labels a run
    trains on, and its indices in the train split. Drawing it reads the class of every
    train image (to stratify), as is usual for class-balanced label subsets; training never
    sees the other images' labels."""
    train = data.splits["train"]
    keep = label_subset(train.labels, label_fraction, seed)
    return Split(train.images[keep], train.labels[keep]), keep


def subset_record(
    indices: torch.Tensor | np.ndarray, labels: torch.Tensor, classes: int
) -> dict[str, Any]:
    """What a result row records of its labelled subset, so pairing can be audited:
    ``labelled_subset``, the SHA-256 of the sorted train-split indices (int64,
    little-endian), and ``per_class``, the labelled images of each class."""
    indices = np.sort(np.asarray(indices, dtype="<i8"))
    counts = np.bincount(np.asarray(labels)[indices], minlength=classes)
    return {"labelled_subset": hashlib.sha256(indices.tobytes()).hexdigest(),
            "per_class": [int(n) for n in counts]}  # fmt: skip


def check_label_fractions(
    data: ArrayData,
    fractions: Sequence[float],
    running: Sequence[float] | None = None,
    key: str = "compare.label_fractions",
) -> None:
    """Check the label fractions ``fractions`` (the params key ``key``) against the train
    split: two that give the identical labelled subset are an error; each of ``running``
    (default: all) that the one-per-class floor raises by more than half gets a warning on
    stderr (:func:`initbench.data.split.floor_warning`).

    Raises:
        ParamsError: two fractions give the identical subset, naming both.
    """
    counts = np.bincount(data.splits["train"].labels.numpy(), minlength=len(data.classes))
    same = identical_subsets(counts.tolist(), fractions)
    if same:
        raise ParamsError(
            f"params.yaml: {key} {same[0]:g} and {same[1]:g} give the identical labelled "
            f"subset on this train split ({sum(subset_sizes(counts.tolist(), same[0]))} images "
            "in all): the two runs would be one; keep one of them"
        )
    for fraction in fractions if running is None else running:
        warning = floor_warning(counts.tolist(), fraction, key)
        if warning:
            print(warning, file=sys.stderr)


@dataclass
class FinetuneResult:
    model: Classifier  # final weights
    history: list[dict[str, float]]  # one row a round, see initbench.training.supervised.fit
    test: Evaluation
    labelled: torch.Tensor  # int64 (n,): the labelled subset's indices in the train split
    steps: int
    plateau: Plateau  # of the per-step train loss

    @property
    def train_images(self) -> int:
        return len(self.labelled)


def finetune(
    data: ArrayData,
    init_path: str | os.PathLike[str],
    model: ModelParams,
    params: FinetuneParams,
    label_fraction: float,
    seed: int,
    device: torch.device,
    log: Callable[[str], None] = tqdm.write,
    on_history: Callable[[list[dict[str, float]]], None] | None = None,
    steps: int | None = None,
    stop: Callable[[list[float]], bool] | None = None,
) -> FinetuneResult:
    """Fine-tune the classifier from an init on ``label_fraction`` of the train labels for
    :func:`initbench.training.loop.step_budget` steps (or ``steps``; ``stop`` may end it
    sooner, see :func:`initbench.training.supervised.fit`), then evaluate the final
    weights on test.

    With ``params.freeze_encoder`` only the (MLP) head trains, on an encoder whose
    BatchNorm statistics were first recomputed on the train images. In a process group
    (:mod:`initbench.training.distributed`) every process runs this alike and :func:`fit` trains on
    its shard of each global batch.

    Raises:
        CheckpointError: as :func:`classifier_from_init`.
    """
    classifier = classifier_from_init(data, init_path, model, seed).to(device)
    normalize = Normalize(data.mean, data.std).to(device)
    train, labelled = labelled_train(data, label_fraction, seed)
    if params.freeze_encoder:
        recalibrate_batchnorm(classifier.encoder, normalize, data.splits["train"].images, device)
    trained = fit(
        classifier, normalize, train, data.splits["val"], epochs=params.epochs,
        min_steps=params.min_steps, lr=params.lr, batch_size=params.batch_size, seed=seed,
        device=device, freeze_encoder=params.freeze_encoder, augment=params.augment, log=log,
        on_history=on_history, steps=steps, stop=stop,
    )  # fmt: skip
    test = evaluate(classifier, normalize, data.splits["test"], device)
    return FinetuneResult(classifier, trained.history, test, labelled, trained.steps,
                          trained.plateau)  # fmt: skip


def probe(
    data: ArrayData,
    init_path: str | os.PathLike[str],
    model: ModelParams,
    params: LinearProbeParams,
    label_fractions: Sequence[float],
    seed: int,
    device: torch.device,
    finetune_seeds: Sequence[int] = (0,),
) -> list[tuple[ProbeResult, np.ndarray]]:
    """Linear probes of the frozen encoder of an init, one per label fraction and fine-tune
    seed: precise BatchNorm on all train images (no labels), then features of every train
    and test image, extracted once and shared by the probes; each fits logistic regression
    (:func:`initbench.training.probes.linear_probe`) on its labelled subset's features, the
    subset and the cross-validation folds drawn from
    :func:`initbench.comparison.grid.run_seed` of ``(seed, finetune seed)``.

    Returns:
        For each of ``label_fractions`` and, within it, each of ``finetune_seeds`` in order:
        the probe's test result and the labelled subset's indices in the train split.

    Raises:
        CheckpointError: as :func:`classifier_from_init`.
    """
    encoder = classifier_from_init(data, init_path, model, seed).encoder.to(device)
    normalize = Normalize(data.mean, data.std).to(device)
    train, test = data.splits["train"], data.splits["test"]
    recalibrate_batchnorm(encoder, normalize, train.images, device)
    train_features = encode(encoder, normalize, train.images, device)
    test_features = encode(encoder, normalize, test.images, device)
    results = []
    for fraction in label_fractions:
        for finetune_seed in finetune_seeds:
            drawn = run_seed(seed, finetune_seed)
            keep = label_subset(train.labels, fraction, drawn).numpy()
            result = linear_probe(
                train_features[keep], train.labels.numpy()[keep], test_features,
                test.labels.numpy(), Cs=params.Cs, max_iter=params.max_iter,
                cv_folds=params.cv_folds, seed=drawn,
            )  # fmt: skip
            results.append((result, keep))
    return results


def result_rows(
    protocol: str,
    data: ArrayData,
    init_path: str | os.PathLike[str],
    params: Params,
    label_fractions: Sequence[float],
    seed: int,
    device: torch.device,
    finetune_seeds: Sequence[int] = (0,),
    budgets: Mapping[float, int] | None = None,
) -> list[dict[str, Any]]:
    """One init checkpoint's runs under ``protocol`` at pretraining seed ``seed``, one
    result row per label fraction and fine-tune seed (each run drawing from
    :func:`initbench.comparison.grid.run_seed`). A fine-tune runs ``budgets[fraction]``
    steps (:mod:`initbench.comparison.budget`: the same for every init), or without
    ``budgets`` :func:`initbench.training.loop.step_budget`'s. Each row holds
    ``label_fraction``, ``finetune_seed``,
    test ``accuracy`` and ``macro_f1`` (6 digits),
    ``train_images`` (labelled); a fine-tune adds ``steps``, ``plateau`` (the check of its
    train loss) and ``history``, a probe ``iterations``, ``converged``, ``C`` and
    ``cv_folds``. The whole classifier trains in a fine-tune here
    (``finetune.freeze_encoder`` is for the single detailed run only).

    Raises:
        ValueError: ``protocol`` is not one of :data:`PROTOCOLS`.
        CheckpointError: as :func:`classifier_from_init`.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    train_labels, classes = data.splits["train"].labels, len(data.classes)
    rows = []
    if protocol == "finetune":
        full = dataclasses.replace(params.finetune, freeze_encoder=False)
        for fraction, finetune_seed in itertools.product(label_fractions, finetune_seeds):
            result = finetune(data, init_path, params.model, full, fraction,
                              run_seed(seed, finetune_seed), device,
                              steps=None if budgets is None else budgets[fraction])  # fmt: skip
            rows.append({"label_fraction": fraction, "finetune_seed": finetune_seed,
                         "accuracy": round(result.test.accuracy, 6),
                         "macro_f1": round(result.test.macro_f1, 6),
                         "train_images": result.train_images, "steps": result.steps,
                         "plateau": result.plateau.record()}
                        | subset_record(result.labelled, train_labels, classes)
                        | {"history": result.history,
                           "test_predictions": result.test.predictions.tolist()})  # fmt: skip
        return rows
    probes = probe(data, init_path, params.model, params.linear_probe, label_fractions, seed,
                   device, finetune_seeds)  # fmt: skip
    runs = itertools.product(label_fractions, finetune_seeds)
    for (fraction, finetune_seed), (outcome, keep) in zip(runs, probes, strict=True):
        rows.append({"label_fraction": fraction, "finetune_seed": finetune_seed,
                     "accuracy": round(outcome.accuracy, 6),
                     "macro_f1": round(outcome.macro_f1, 6), "train_images": len(keep),
                     "iterations": outcome.iterations, "converged": outcome.converged,
                     "C": outcome.C, "cv_folds": outcome.cv_folds}
                    | subset_record(keep, train_labels, classes)
                    | {"test_predictions": outcome.predictions.tolist()})  # fmt: skip
    return rows
