"""Typed, validated params.yaml.

Each section of params.yaml becomes a frozen dataclass. A missing or unknown
key, a wrong type or a value out of range raises :class:`ParamsError` with a
one-line message that names the key, before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from initbench.errors import ParamsError

#: Init strategies that have a stage writing ``artifacts/init/<name>.pt``.
INIT_STRATEGIES: tuple[str, ...] = ("random", "autoencoder", "simclr", "kmeans")
#: conv1's kernel size in initbench.model; k-means patches must match it.
CONV1_KERNEL = 3
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Bits of data a 16-bit (or 32-bit integer) grayscale image may hold: ``data.bit_depth``.
BIT_DEPTHS: tuple[int, ...] = (8, 10, 12, 14, 16)


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars, as DVC reads and writes them.

    PyYAML follows YAML 1.1, where ``1e-05`` (how DVC writes ``-S lr=1e-5``) and ``1e-3`` are
    strings and ``yes``/``no`` are booleans; in YAML 1.2 the former are floats and the latter
    strings. Ints are decimal or ``0x``/``0o``; ``010`` is ten, not octal.
    """


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":int", ":float"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0x", "0o")) else int(text)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def read_yaml(text: str) -> Any:
    """Parse YAML text the way DVC does (YAML 1.2 scalars). Raises: yaml.YAMLError."""
    return yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader subclass: safe


def _fail(key: str, message: str) -> typing.NoReturn:
    raise ParamsError(f"{key} {message}")


def _check_fraction(key: str, value: float, *, allow_one: bool = False) -> None:
    upper_ok = value <= 1 if allow_one else value < 1
    if not (value > 0 and upper_ok):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        _fail(key, f"must be in {interval}, got {value}")


def _check_min(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        _fail(key, f"must be >= {minimum}, got {value}")


def _check_training(section: str, epochs: int, min_steps: int, lr: float, batch_size: int) -> None:
    _check_min(f"{section}.epochs", epochs, 1)
    _check_min(f"{section}.min_steps", min_steps, 0)
    _check_min(f"{section}.batch_size", batch_size, 1)
    if not lr > 0:
        _fail(f"{section}.lr", f"must be > 0, got {lr}")


@dataclass(frozen=True)
class DataParams:
    """How ``ingest`` turns image files into arrays, and how it splits them."""

    image_size: int
    channels: int
    val_fraction: float
    test_fraction: float
    split_seed: int
    #: ``"auto"`` or one of :data:`BIT_DEPTHS`: how many bits of a 16-bit image hold data
    bit_depth: object

    def __post_init__(self) -> None:
        _check_min("data.split_seed", self.split_seed, 0)
        if self.bit_depth != "auto" and (
            type(self.bit_depth) is not int or self.bit_depth not in BIT_DEPTHS
        ):
            _fail(
                "data.bit_depth",
                "must be auto or one of: "
                + ", ".join(map(str, BIT_DEPTHS))
                + f" (the bits of data in 16-bit images), got {self.bit_depth!r}",
            )
        if self.channels not in (1, 3):
            _fail("data.channels", f"must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        _check_min("data.image_size", self.image_size, 1)
        _check_fraction("data.val_fraction", self.val_fraction)
        _check_fraction("data.test_fraction", self.test_fraction)
        total = self.val_fraction + self.test_fraction
        if total >= 1:
            _fail(
                "data.val_fraction",
                f"+ data.test_fraction must be < 1 so that a train split remains, got {total:g}",
            )


@dataclass(frozen=True)
class ModelParams:
    """The lab report's CNN: conv blocks (3x3 conv, BatchNorm, LeakyReLU, pool, dropout), dense head."""

    channels: list[int]
    dropout: list[float]
    hidden: int
    head_dropout: float

    def __post_init__(self) -> None:
        if not self.channels:
            _fail("model.channels", "must list at least one conv block width")
        for width in self.channels:
            _check_min("model.channels", width, 1)
        if len(self.dropout) != len(self.channels):
            _fail(
                "model.dropout",
                f"must have one entry per conv block ({len(self.channels)}, as model.channels), "
                f"got {len(self.dropout)}",
            )
        for rate in self.dropout:
            if not 0 <= rate < 1:
                _fail("model.dropout", f"rates must be in [0, 1), got {rate}")
        if not 0 <= self.head_dropout < 1:
            _fail("model.head_dropout", f"must be in [0, 1), got {self.head_dropout}")
        _check_min("model.hidden", self.hidden, 1)


@dataclass(frozen=True)
class PatchesParams:
    """Patch sampling and whitening for the k-means init (Coates & Ng 2011)."""

    size: int
    per_image: int
    max_images: int
    min_std: float
    whiten: bool
    epsilon: float

    def __post_init__(self) -> None:
        if self.size != CONV1_KERNEL:
            _fail("patches.size", f"must equal conv1's kernel size {CONV1_KERNEL}, got {self.size}")
        _check_min("patches.per_image", self.per_image, 1)
        _check_min("patches.max_images", self.max_images, 1)
        if not (self.min_std >= 0 and math.isfinite(self.min_std)):
            _fail("patches.min_std", f"must be a finite number >= 0, got {self.min_std}")
        if not self.epsilon > 0:
            _fail("patches.epsilon", f"must be > 0, got {self.epsilon}")


@dataclass(frozen=True)
class KmeansParams:
    """k-means on whitened patches; the centroids become conv1's filters."""

    clusters: int

    def __post_init__(self) -> None:
        _check_min("kmeans.clusters", self.clusters, 1)


@dataclass(frozen=True)
class AutoencoderParams:
    """Convolutional autoencoder pretraining of the encoder (MSE reconstruction)."""

    epochs: int
    min_steps: int
    lr: float
    batch_size: int

    def __post_init__(self) -> None:
        _check_training("autoencoder", self.epochs, self.min_steps, self.lr, self.batch_size)


@dataclass(frozen=True)
class SimclrParams:
    """SimCLR contrastive pretraining (Chen et al. 2020)."""

    epochs: int
    min_steps: int
    lr: float
    batch_size: int
    temperature: float
    projection_dim: int

    def __post_init__(self) -> None:
        _check_training("simclr", self.epochs, self.min_steps, self.lr, self.batch_size)
        if self.batch_size < 2:
            _fail(
                "simclr.batch_size",
                f"must be >= 2 so each batch has negatives, got {self.batch_size}",
            )
        if not self.temperature > 0:
            _fail("simclr.temperature", f"must be > 0, got {self.temperature}")
        _check_min("simclr.projection_dim", self.projection_dim, 1)


@dataclass(frozen=True)
class FinetuneParams:
    """Supervised training of the classifier from an init checkpoint."""

    epochs: int
    min_steps: int
    lr: float
    batch_size: int
    label_fraction: float
    freeze_encoder: bool

    def __post_init__(self) -> None:
        _check_training("finetune", self.epochs, self.min_steps, self.lr, self.batch_size)
        _check_fraction("finetune.label_fraction", self.label_fraction, allow_one=True)


@dataclass(frozen=True)
class LinearProbeParams:
    """Multinomial logistic regression on the frozen encoder's features (scikit-learn)."""

    C: float  # scikit-learn's name: inverse L2 regularization strength
    max_iter: int

    def __post_init__(self) -> None:
        if not self.C > 0:
            _fail("linear_probe.C", f"must be > 0, got {self.C}")
        _check_min("linear_probe.max_iter", self.max_iter, 1)


def _check_unique(key: str, values: list[Any]) -> None:
    if not values:
        _fail(key, "must list at least one value")
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        _fail(key, f"lists {repeated[0]!r} more than once")


@dataclass(frozen=True)
class CompareParams:
    """The comparison: every init x seed x label fraction, fine-tuned and linearly probed,
    paired by seed."""

    inits: list[str]
    seeds: list[int]
    label_fractions: list[float]

    def __post_init__(self) -> None:
        _check_unique("compare.inits", self.inits)
        for name in self.inits:
            if name not in INIT_STRATEGIES:
                _fail("compare.inits",
                      f"entries must be among: {', '.join(INIT_STRATEGIES)} (got {name!r})")  # fmt: skip
        if "random" not in self.inits:
            _fail("compare.inits", "must include random: every init is compared with it")
        _check_unique("compare.seeds", self.seeds)
        for seed in self.seeds:
            _check_min("compare.seeds", seed, 0)
        _check_unique("compare.label_fractions", self.label_fractions)
        for fraction in self.label_fractions:
            _check_fraction("compare.label_fractions", fraction, allow_one=True)
        percents = [f"{fraction * 100:g}%" for fraction in self.label_fractions]
        if len(set(percents)) < len(percents):
            _fail("compare.label_fractions", f"has values that round to the same percentage "
                                             f"({', '.join(percents)}); keep them apart")  # fmt: skip


@dataclass(frozen=True)
class Params:
    """All of params.yaml. Cross-section rules are checked here."""

    init: str
    seed: int
    device: str
    threads: int
    nproc_per_node: int
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
        if self.init not in INIT_STRATEGIES:
            _fail("init", f"must be one of: {', '.join(INIT_STRATEGIES)} (got {self.init!r})")
        if self.device not in DEVICES:
            _fail("device", f"must be one of: {', '.join(DEVICES)} (got {self.device!r})")
        _check_min("seed", self.seed, 0)
        _check_min("threads", self.threads, 0)
        _check_min("nproc_per_node", self.nproc_per_node, 1)
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


def _convert(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type hint ``hint``; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list):
            _fail(key, f"must be a list of {item_hint.__name__}, got {value!r}")
        return [_convert(key, item, item_hint) for item in value]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if hint is object:  # any YAML value; the dataclass's own check names what is allowed
        return value
    if hint is bool:
        if not isinstance(value, bool):
            _fail(key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(key, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} for {key}")  # a bug in this module


def _build(cls: type, raw: Any, prefix: str = "") -> Any:
    if not isinstance(raw, dict):
        _fail(prefix or "(top level)", f"must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    unknown = sorted(set(raw) - set(names), key=str)
    if unknown:
        _fail(dotted(unknown[0]), f"is not a known key; valid keys here: {', '.join(names)}")
    missing = [n for n in names if n not in raw]
    if missing:
        _fail(dotted(missing[0]), "is missing")
    values = {n: _convert(dotted(n), raw[n], hints[n]) for n in names}
    return cls(**values)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping. Raises: ParamsError, ``"<source>: <key> ..."``."""
    try:
        return _build(Params, raw)
    except ParamsError as exc:
        raise ParamsError(f"{source}: {exc}") from None


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
    from initbench.cli import run

    run(main, wall_time=False)
