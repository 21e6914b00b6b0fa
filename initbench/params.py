"""Typed, validated params.yaml.

Each section of params.yaml becomes a frozen pydantic dataclass (a standard dataclass, so
``dataclasses.asdict`` and ``replace`` work). A missing or unknown key, a wrong type or a
value out of range raises :class:`ParamsError` with a one-line message that names the key,
before any work starts.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, TypeAdapter, ValidationError

from initbench.core.errors import ParamsError
from initbench.core.typed import (
    UNKNOWN_KEY,
    Bool,
    Count,
    Float,
    Fraction,
    Int,
    LabelFraction,
    NonNegative,
    Positive,
    Str,
    explain,
)
from initbench.core.typed import fail as _fail
from initbench.core.typed import rule as _rule
from initbench.core.typed import section as _section
from initbench.core.yaml12 import read_yaml
from initbench.data.decode import BIT_DEPTHS
from initbench.models.sizes import KERNEL_SIZE

#: Init strategies that have a stage writing ``artifacts/init/<name>.pt``.
INIT_STRATEGIES: tuple[str, ...] = ("random", "autoencoder", "simclr", "kmeans")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Multiplicity corrections the comparison knows (initbench.comparison.stats.CORRECTIONS).
CORRECTIONS: tuple[str, ...] = ("holm", "none")


@_section
class DataParams:
    """How ``ingest`` turns image files into arrays, and how it splits them."""

    image_size: Count
    channels: Annotated[
        Int, _rule(lambda v: v in (1, 3), "must be 1 (grayscale) or 3 (RGB), got {!r}")
    ]
    val_fraction: Fraction
    test_fraction: Fraction
    split_seed: NonNegative
    #: ``"auto"`` or one of :data:`BIT_DEPTHS`: how many bits of a 16-bit image hold data
    bit_depth: Annotated[
        object,
        _rule(
            lambda v: v == "auto" or (type(v) is int and v in BIT_DEPTHS),
            f"must be auto or one of: {', '.join(map(str, BIT_DEPTHS))}"
            " (the bits of data in 16-bit images), got {!r}",
        ),
    ]

    def __post_init__(self) -> None:
        total = self.val_fraction + self.test_fraction
        if total >= 1:
            _fail(
                "data.val_fraction",
                f"+ data.test_fraction must be < 1 so that a train split remains, got {total:g}",
            )


@_section
class ModelParams:
    """The lab report's CNN: conv blocks (3x3 conv, BatchNorm, LeakyReLU, pool, dropout), dense head."""

    channels: list[Count]
    dropout: list[
        Annotated[Float, _rule(lambda v: 0 <= v < 1, "rates must be in [0, 1), got {!r}")]
    ]
    hidden: Count
    head_dropout: Annotated[Float, _rule(lambda v: 0 <= v < 1, "must be in [0, 1), got {!r}")]

    def __post_init__(self) -> None:
        if not self.channels:
            _fail("model.channels", "must list at least one conv block width")
        if len(self.dropout) != len(self.channels):
            _fail(
                "model.dropout",
                f"must have one entry per conv block ({len(self.channels)}, as model.channels), "
                f"got {len(self.dropout)}",
            )


@_section
class PatchesParams:
    """Patch sampling and whitening for the k-means init (Coates & Ng 2011)."""

    size: Annotated[
        Int,
        _rule(
            lambda v: v == KERNEL_SIZE,
            f"must equal conv1's kernel size {KERNEL_SIZE}, got {{!r}}",
        ),
    ]
    per_image: Count
    max_images: Count
    min_std: Annotated[
        Float,
        _rule(lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0, got {!r}"),
    ]
    whiten: Bool
    epsilon: Positive


@_section
class KmeansParams:
    """k-means on whitened patches; the centroids become conv1's filters."""

    clusters: Count


@_section
class AutoencoderParams:
    """Convolutional autoencoder pretraining of the encoder (MSE reconstruction)."""

    epochs: Count
    min_steps: NonNegative
    lr: Positive
    batch_size: Count
    #: grow the budget from max(epochs, min_steps) until the train MSE is at a plateau
    #: (initbench.training.plateau.plateau_stop), at most max_steps
    until_plateau: Bool
    max_steps: Count


@_section
class SimclrParams:
    """SimCLR contrastive pretraining (Chen et al. 2020)."""

    epochs: Count
    min_steps: NonNegative
    lr: Positive
    batch_size: Count
    temperature: Positive
    projection_dim: Count
    #: grow the budget from max(epochs, min_steps) until NT-Xent is at a plateau, at most
    #: max_steps
    until_plateau: Bool
    max_steps: Count

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            _fail(
                "simclr.batch_size",
                f"must be >= 2 so each batch has negatives, got {self.batch_size}",
            )


@_section
class FinetuneParams:
    """Supervised training of the classifier from an init checkpoint."""

    epochs: Count
    min_steps: NonNegative
    lr: Positive
    batch_size: Count
    label_fraction: LabelFraction
    freeze_encoder: Bool
    #: random crop with padding and horizontal flip of every training batch, for every init
    augment: Bool
    #: the comparison's fine-tune budgets grow from max(epochs, min_steps) until random
    #: init's train loss is at a plateau (initbench.comparison.budget), up to max_steps
    until_plateau: Bool
    max_steps: Count


@_section
class LinearProbeParams:
    """Multinomial logistic regression on the frozen encoder's features (scikit-learn)."""

    #: the grid of C (scikit-learn's inverse L2 strength) that cross-validation on each
    #: run's labelled subset chooses from; one value: no cross-validation
    Cs: list[Positive]
    cv_folds: Annotated[Int, Field(ge=2)]
    max_iter: Count

    def __post_init__(self) -> None:
        _check_unique("linear_probe.Cs", self.Cs)


def _check_unique(key: str, values: list[Any]) -> None:
    if not values:
        _fail(key, "must list at least one value")
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        _fail(key, f"lists {repeated[0]!r} more than once")


@_section
class CompareParams:
    """The comparison: every init x seed x label fraction, fine-tuned and linearly probed,
    paired by seed."""

    inits: list[Str]
    seeds: list[NonNegative]
    #: fine-tune repeats of each pretraining checkpoint (0: the pretraining seed's own draw)
    finetune_seeds: list[NonNegative]
    label_fractions: list[LabelFraction]
    #: the difference in test accuracy (0.01 = one point) that matters: equivalence and power
    margin: Fraction
    #: multiplicity adjustment over the report's init-vs-random tests
    correction: Annotated[
        Str,
        _rule(
            lambda v: v in CORRECTIONS,
            f"must be one of: {', '.join(CORRECTIONS)} (got {{!r}})",
        ),
    ]

    def __post_init__(self) -> None:
        _check_unique("compare.inits", self.inits)
        for name in self.inits:
            if name not in INIT_STRATEGIES:
                _fail("compare.inits",
                      f"entries must be among: {', '.join(INIT_STRATEGIES)} (got {name!r})")  # fmt: skip
        if "random" not in self.inits:
            _fail("compare.inits", "must include random: every init is compared with it")
        _check_unique("compare.seeds", self.seeds)
        _check_unique("compare.finetune_seeds", self.finetune_seeds)
        _check_unique("compare.label_fractions", self.label_fractions)
        percents = [f"{fraction * 100:g}%" for fraction in self.label_fractions]
        if len(set(percents)) < len(percents):
            _fail("compare.label_fractions", f"has values that round to the same percentage "
                                             f"({', '.join(percents)}); keep them apart")  # fmt: skip


@_section
class Params:
    """All of params.yaml. Cross-section rules are checked here."""

    init: Annotated[
        Str,
        _rule(
            lambda v: v in INIT_STRATEGIES,
            f"must be one of: {', '.join(INIT_STRATEGIES)} (got {{!r}})",
        ),
    ]
    seed: NonNegative
    device: Annotated[
        Str, _rule(lambda v: v in DEVICES, f"must be one of: {', '.join(DEVICES)} (got {{!r}})")
    ]
    threads: NonNegative
    nproc_per_node: Count
    data: DataParams
    model: ModelParams
    patches: PatchesParams
    kmeans: KmeansParams
    autoencoder: AutoencoderParams
    simclr: SimclrParams
    finetune: FinetuneParams
    linear_probe: LinearProbeParams
    compare: CompareParams

    def __post_init__(self) -> None:
        if self.seed not in self.compare.seeds:
            _fail(
                "seed",
                f"must be one of compare.seeds {self.compare.seeds}, the seeds pretraining runs "
                f"for (got {self.seed}); add it there",
            )
        if self.kmeans.clusters != self.model.channels[0]:
            _fail(
                "kmeans.clusters",
                f"must equal model.channels[0] (conv1's filter count, {self.model.channels[0]}), "
                f"got {self.kmeans.clusters}",
            )
        most_patches = self.patches.per_image * self.patches.max_images
        if most_patches < max(2, self.kmeans.clusters):
            _fail(
                "patches.per_image",
                f"x patches.max_images allows at most {most_patches} patches; k-means needs at "
                f"least kmeans.clusters={self.kmeans.clusters} (and 2 for whitening)",
            )
        n_pools = len(self.model.channels)
        smallest = 2**n_pools
        if self.data.image_size < smallest:
            _fail(
                "data.image_size",
                f"must be >= {smallest} for {n_pools} 2x2 max-pools (model.channels), "
                f"got {self.data.image_size}",
            )


_PARAMS = TypeAdapter(Params)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping. Raises: ParamsError, ``"<source>: <key> ..."``."""
    try:
        return _PARAMS.validate_python(raw)
    except ValidationError as exc:  # one problem, in field order; an unknown key (a typo) first
        first = min(exc.errors(), key=lambda error: error["type"] not in UNKNOWN_KEY)
        raise ParamsError(f"{source}: {explain(first, Params)}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml. Raises: ParamsError (one line, naming the key)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the project root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ParamsError(
            f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_params(raw, source=str(path))


def main(argv: list[str] | None = None) -> None:
    """``python -m initbench.params [PATH]``: the check every stage runs before its work."""
    parser = argparse.ArgumentParser(
        prog="python -m initbench.params",
        description="Validate a params file; exit 1 with a one-line error naming the key.",
    )
    parser.add_argument("path", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    load_params(args.path)
    print(f"{args.path}: valid")


if __name__ == "__main__":
    from initbench.core.cli import run

    run(main, wall_time=False)
