"""Tests of initbench.params: the repo's params.yaml and every validation rule."""

from __future__ import annotations

import ast
import copy
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from initbench import params as P
from initbench.core import yaml12
from initbench.core.errors import ParamsError

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))


def _with(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with the dotted ``key`` set to ``value``."""
    new = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = new
    for part in parents:
        node = node[part]
    node[last] = value
    return new


def _without(raw: dict[str, Any], key: str) -> dict[str, Any]:
    new = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = new
    for part in parents:
        node = node[part]
    del node[last]
    return new


def _error(mapping: dict[str, Any]) -> str:
    with pytest.raises(ParamsError) as info:
        P.parse_params(mapping)
    message = str(info.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# --------------------------------------------------------------------------- the repo's file


def test_repo_params_load_with_the_right_types():
    params = P.load_params(REPO_PARAMS)
    assert isinstance(params, P.Params)
    assert isinstance(params.init, str) and params.init in P.INIT_STRATEGIES
    assert isinstance(params.seed, int) and not isinstance(params.seed, bool)
    assert params.device in P.DEVICES
    assert params.nproc_per_node == 1  # the default runs each stage in one process
    assert isinstance(params.data, P.DataParams)
    assert isinstance(params.data.image_size, int)
    assert params.data.channels in (1, 3)
    assert isinstance(params.data.val_fraction, float)
    assert isinstance(params.data.test_fraction, float)
    assert isinstance(params.data.split_seed, int) and not isinstance(params.data.split_seed, bool)
    assert isinstance(params.model, P.ModelParams)
    assert all(isinstance(w, int) for w in params.model.channels)
    assert all(isinstance(r, float) for r in params.model.dropout)
    assert len(params.model.dropout) == len(params.model.channels)
    assert isinstance(params.model.hidden, int)
    assert isinstance(params.model.head_dropout, float)
    assert isinstance(params.finetune, P.FinetuneParams)
    assert isinstance(params.finetune.epochs, int)
    assert isinstance(params.finetune.lr, float)
    assert isinstance(params.finetune.batch_size, int)
    assert isinstance(params.finetune.label_fraction, float)  # 1.0 in the file
    assert isinstance(params.finetune.freeze_encoder, bool)
    assert isinstance(params.patches.min_std, float)
    for section in (params.autoencoder, params.simclr, params.finetune):
        assert isinstance(section.min_steps, int) and not isinstance(section.min_steps, bool)
    assert isinstance(params.linear_probe, P.LinearProbeParams)
    assert all(isinstance(c, float) for c in params.linear_probe.Cs)
    assert isinstance(params.linear_probe.cv_folds, int)
    assert isinstance(params.finetune.augment, bool)
    assert isinstance(params.linear_probe.max_iter, int)
    assert isinstance(params.compare, P.CompareParams)
    assert all(isinstance(name, str) for name in params.compare.inits)
    assert all(isinstance(seed, int) for seed in params.compare.seeds)
    assert all(isinstance(f, float) for f in params.compare.label_fractions)
    assert params.seed in params.compare.seeds


def test_repo_params_round_trip_through_asdict(raw):
    params = P.parse_params(raw)
    assert dataclasses.asdict(params) == raw
    assert P.parse_params(dataclasses.asdict(params)) == params


def test_params_are_frozen(raw):
    params = P.parse_params(raw)
    with pytest.raises(AttributeError):
        params.seed = 1  # type: ignore[misc]


def test_ints_are_accepted_for_floats(raw):
    params = P.parse_params(_with(raw, "finetune.lr", 1))
    assert params.finetune.lr == 1.0 and isinstance(params.finetune.lr, float)


# --------------------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("init", "imagenet", "random"),
        ("device", "tpu", "auto, cpu, cuda"),
        ("seed", -1, ">= 0"),
        ("threads", -1, ">= 0"),
        ("threads", 1.5, "integer"),
        ("nproc_per_node", 0, ">= 1"),
        ("nproc_per_node", 2.0, "integer"),
        ("data.val_fraction", 0, "(0, 1)"),
        ("data.val_fraction", 1, "(0, 1)"),
        ("data.val_fraction", -0.1, "(0, 1)"),
        ("data.test_fraction", 0, "(0, 1)"),
        ("data.test_fraction", 1, "(0, 1)"),
        ("data.test_fraction", -0.2, "(0, 1)"),
        ("finetune.label_fraction", 0, "(0, 1]"),
        ("finetune.label_fraction", 1.5, "(0, 1]"),
        ("finetune.epochs", 0, ">= 1"),
        ("finetune.batch_size", 0, ">= 1"),
        ("finetune.lr", 0, "> 0"),
        ("finetune.lr", -0.001, "> 0"),
        ("data.image_size", 4, ">= 8"),
        ("data.image_size", 0, ">= 1"),
        ("data.channels", 2, "1 (grayscale) or 3 (RGB)"),
        ("model.dropout", [0.3, 0.4], "one entry per conv block"),
        ("model.dropout", [0.3, 0.4, 1.0], "[0, 1)"),
        ("model.head_dropout", 1.0, "[0, 1)"),
        ("model.channels", [], "at least one"),
        ("model.hidden", 0, ">= 1"),
    ],
)
def test_out_of_range_values_are_rejected(raw, key, value, expected):
    message = _error(_with(raw, key, value))
    assert message.startswith(f"params.yaml: {key} ")
    assert expected in message


def test_unknown_init_lists_valid_ones(raw):
    message = _error(_with(raw, "init", "imagenet"))
    assert "'imagenet'" in message
    for name in P.INIT_STRATEGIES:
        assert name in message


def test_val_plus_test_must_leave_a_train_split(raw):
    mapping = _with(_with(raw, "data.val_fraction", 0.5), "data.test_fraction", 0.5)
    message = _error(mapping)
    assert "data.val_fraction" in message and "data.test_fraction" in message
    assert "< 1" in message
    mapping = _with(_with(raw, "data.val_fraction", 0.6), "data.test_fraction", 0.45)
    assert "data.test_fraction" in _error(mapping)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("finetune.label_fraction", 1.0),
        ("finetune.label_fraction", 1),
        ("finetune.label_fraction", 0.01),
        ("data.image_size", 8),  # the smallest size for 3 max-pools
        ("data.channels", 3),
        ("device", "cpu"),
        ("device", "cuda"),
        ("nproc_per_node", 1),
        ("nproc_per_node", 8),
        ("seed", 0),
        ("data.val_fraction", 0.45),
    ],
)
def test_boundary_values_are_accepted(raw, key, value):
    params = P.parse_params(_with(raw, key, value))
    section, _, name = key.rpartition(".")
    holder = getattr(params, section) if section else params
    assert getattr(holder, name) == value


def test_image_size_limit_follows_the_number_of_blocks(raw):
    mapping = _with(_with(raw, "model.channels", [8, 8]), "model.dropout", [0.1, 0.1])
    mapping = _with(mapping, "kmeans.clusters", 8)
    assert P.parse_params(_with(mapping, "data.image_size", 4)).data.image_size == 4
    message = _error(_with(mapping, "data.image_size", 3))
    assert "data.image_size" in message and ">= 4" in message


# --------------------------------------------------------------------------- keys and types


@pytest.mark.parametrize(
    "key",
    [
        "init",
        "seed",
        "device",
        "nproc_per_node",
        "data",
        "data.channels",
        "data.split_seed",
        "model.hidden",
        "patches.min_std",
        "autoencoder.min_steps",
        "simclr.min_steps",
        "finetune.lr",
        "finetune.min_steps",
        "linear_probe",
        "linear_probe.Cs",
        "linear_probe.cv_folds",
        "linear_probe.max_iter",
        "finetune.augment",
        "compare",
        "compare.inits",
        "compare.seeds",
        "compare.label_fractions",
    ],
)
def test_missing_key_is_named(raw, key):
    message = _error(_without(raw, key))
    assert message == f"params.yaml: {key} is missing"


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (
            "learning_rate",
            "init, seed, device, threads, nproc_per_node, data, model, patches, kmeans, autoencoder, "
            "simclr, finetune, linear_probe, compare",
        ),
        ("data.size", "image_size, channels, val_fraction, test_fraction, split_seed"),
        ("patches.stride", "size, per_image, max_images, min_std, whiten, epsilon"),
        ("autoencoder.momentum", "epochs, min_steps, lr, batch_size"),
        (
            "simclr.momentum",
            "epochs, min_steps, lr, batch_size, temperature, projection_dim",
        ),
        (
            "finetune.momentum",
            "epochs, min_steps, lr, batch_size, label_fraction, freeze_encoder, augment",
        ),
        ("linear_probe.penalty", "Cs, cv_folds, max_iter"),
        ("compare.fractions", "inits, seeds, finetune_seeds, label_fractions, margin, correction"),
    ],
)
def test_unknown_key_is_named_with_valid_keys(raw, key, valid):
    message = _error(_with(raw, key, 1))
    assert message.startswith(f"params.yaml: {key} is not a known key")
    assert valid in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("finetune.epochs", "20", "must be an integer"),
        ("finetune.epochs", True, "must be an integer"),
        ("finetune.epochs", 20.0, "must be an integer"),
        ("finetune.epochs", 2.5, "must be an integer"),
        ("seed", False, "must be an integer"),
        ("data.image_size", None, "must be an integer"),
        ("finetune.lr", "0.001", "must be a number"),
        ("finetune.lr", True, "must be a number"),
        ("finetune.freeze_encoder", "false", "must be true or false"),
        ("finetune.freeze_encoder", 0, "must be true or false"),
        ("init", 1, "must be a string"),
        ("model.channels", 16, "must be a list of int"),
        ("model.channels", [16, "32", 64], "must be an integer"),
        ("model.dropout", 0.3, "must be a list of float"),
        ("data", [1, 2], "must be a mapping"),
    ],
)
def test_wrong_types_are_rejected(raw, key, value, expected):
    message = _error(_with(raw, key, value))
    assert message.startswith(f"params.yaml: {key} ")
    assert expected in message


@pytest.mark.parametrize("document", [None, [], "text", 3])
def test_top_level_must_be_a_mapping(document):
    message = _error(document)  # type: ignore[arg-type]
    assert "must be a mapping" in message


# --------------------------------------------------------------------------- load_params


def test_load_params_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamsError) as info:
        P.load_params(path)
    message = str(info.value)
    assert str(path) in message and "not found" in message
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__suppress_context__  # raised "from None"


@pytest.mark.parametrize(
    "text",
    ["seed: [1, 2\n", "init: random\n  seed: 0\n: :\n", "data: {image_size: 32\n", "a: b: c\n"],
)
def test_load_params_invalid_yaml(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as info:
        P.load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML")
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__suppress_context__


def test_load_params_reads_a_valid_copy(tmp_path, raw):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_with(raw, "finetune.epochs", 3)))
    assert P.load_params(path).finetune.epochs == 3
    path.write_text(yaml.safe_dump(_with(raw, "finetune.epochs", 0)))
    with pytest.raises(ParamsError, match=r"finetune\.epochs"):
        P.load_params(path)


def test_load_params_error_names_the_file_it_read(tmp_path, raw):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(_with(raw, "init", "randm")))
    with pytest.raises(ParamsError) as info:
        P.load_params(path)
    assert str(info.value) == (
        f"{path}: init must be one of: random, autoencoder, simclr, kmeans (got 'randm')"
    )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "initbench.params", *args],
        cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_PARAMS.parent)},
    )  # fmt: skip


def test_cli_accepts_the_repo_params_and_refuses_a_typo_in_one_line(tmp_path, raw):
    ok = _cli(cwd=REPO_PARAMS.parent)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "params.yaml: valid\n", "")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_with(raw, "init", "kmean")))
    bad = _cli(cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr == (
        "error: params.yaml: init must be one of: random, autoencoder, simclr, kmeans"
        " (got 'kmean')\n"
    )


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
def test_load_params_unreadable_file_is_a_params_error(tmp_path, kind):
    path = tmp_path / "params.yaml"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"init: \xff\xfe\n")
    with pytest.raises(ParamsError):
        P.load_params(path)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("kmeans.clusters", 8, "model.channels[0]"),
        ("patches.size", 5, "conv1's kernel size 3"),
        ("patches.per_image", 0, ">= 1"),
        ("patches.epsilon", 0, "> 0"),
        ("autoencoder.epochs", 0, ">= 1"),
        ("autoencoder.lr", -1, "> 0"),
        ("simclr.batch_size", 1, ">= 2"),
        ("simclr.temperature", 0, "> 0"),
        ("simclr.projection_dim", 0, ">= 1"),
        ("patches.whiten", "yes", "true or false"),
    ],
)
def test_pretraining_sections_are_validated(raw, key, value, fragment):
    message = _error(_with(raw, key, value))
    assert message.startswith(f"params.yaml: {key}") and fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("init", ["random", "autoencoder", "simclr", "kmeans"])
def test_every_strategy_is_a_valid_init(raw, init):
    assert P.parse_params(_with(raw, "init", init)).init == init


def test_too_few_patches_for_the_clusters_is_refused(raw):
    mapping = _with(_with(raw, "patches.per_image", 3), "patches.max_images", 5)
    message = _error(mapping)
    assert "patches.per_image" in message and "kmeans.clusters=16" in message
    assert P.parse_params(_with(mapping, "patches.max_images", 6)).patches.max_images == 6


# --------------------------------------------------------------------------- step budgets, probe


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("autoencoder.min_steps", -1, "autoencoder.min_steps must be >= 0, got -1"),
        ("simclr.min_steps", -1, "simclr.min_steps must be >= 0, got -1"),
        ("finetune.min_steps", -5, "finetune.min_steps must be >= 0, got -5"),
        ("data.split_seed", -1, "data.split_seed must be >= 0, got -1"),
        ("patches.min_std", -0.1, "patches.min_std must be a finite number >= 0, got -0.1"),
        ("linear_probe.Cs", [1.0, 0], "linear_probe.Cs must be > 0, got 0.0"),
        ("linear_probe.Cs", [-1], "linear_probe.Cs must be > 0, got -1.0"),
        ("linear_probe.Cs", [], "linear_probe.Cs must list at least one value"),
        ("linear_probe.Cs", [1.0, 1], "linear_probe.Cs lists 1.0 more than once"),
        ("linear_probe.cv_folds", 1, "linear_probe.cv_folds must be >= 2, got 1"),
        ("finetune.augment", "yes", "finetune.augment must be true or false, got 'yes'"),
        ("linear_probe.max_iter", 0, "linear_probe.max_iter must be >= 1, got 0"),
    ],
)
def test_new_keys_out_of_range_are_rejected(raw, key, value, message):
    assert _error(_with(raw, key, value)) == f"params.yaml: {message}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("autoencoder.min_steps", 0),  # 0: the budget is epochs alone
        ("simclr.min_steps", 0),
        ("finetune.min_steps", 0),
        ("finetune.min_steps", 100000),
        ("data.split_seed", 0),
        ("data.split_seed", 12345),
        ("patches.min_std", 0.0),  # 0 drops only constant patches
        ("linear_probe.Cs", [1e-6]),
        ("linear_probe.max_iter", 1),
    ],
)
def test_new_keys_boundary_values_are_accepted(raw, key, value):
    params = P.parse_params(_with(raw, key, value))
    section, name = key.split(".")
    assert getattr(getattr(params, section), name) == value


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("finetune.min_steps", 10.0, "must be an integer"),
        ("data.split_seed", True, "must be an integer"),
        ("linear_probe.max_iter", "1000", "must be an integer"),
        ("linear_probe.Cs", ["1.0"], "must be a number"),
        ("patches.min_std", None, "must be a number"),
        ("compare.inits", "random", "must be a list of str"),
        ("compare.inits", ["random", 1], "must be a string"),
        ("compare.seeds", 0, "must be a list of int"),
        ("compare.seeds", [0, 1.0], "must be an integer"),
        ("compare.label_fractions", [0.1, "0.5"], "must be a number"),
    ],
)
def test_new_keys_wrong_types_are_rejected(raw, key, value, expected):
    message = _error(_with(raw, key, value))
    assert message.startswith(f"params.yaml: {key} ")
    assert expected in message


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_min_std_must_be_finite(raw, value):
    assert "patches.min_std must be a finite number" in _error(_with(raw, "patches.min_std", value))


def test_label_fractions_that_share_a_percentage_are_rejected(raw):
    # compare.json keys cells by percentage: two such fractions would overwrite each other
    message = _error(_with(raw, "compare.label_fractions", [0.1, 0.1000001]))
    assert "compare.label_fractions has values that round to the same percentage" in message


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("compare.inits", [], "compare.inits must list at least one value"),
        (
            "compare.inits",
            ["random", "simclr", "random"],
            "compare.inits lists 'random' more than once",
        ),
        (
            "compare.inits",
            ["random", "imagenet"],
            "compare.inits entries must be among: random, autoencoder, simclr, kmeans "
            "(got 'imagenet')",
        ),
        (
            "compare.inits",
            ["simclr", "kmeans"],
            "compare.inits must include random: every init is compared with it",
        ),
        ("compare.seeds", [], "compare.seeds must list at least one value"),
        ("compare.seeds", [0, 1, 1], "compare.seeds lists 1 more than once"),
        ("compare.seeds", [0, -1], "compare.seeds must be >= 0, got -1"),
        ("compare.label_fractions", [], "compare.label_fractions must list at least one value"),
        (
            "compare.label_fractions",
            [0.1, 0.01, 0.1],
            "compare.label_fractions lists 0.1 more than once",
        ),
        ("compare.label_fractions", [0.1, 0], "compare.label_fractions must be in (0, 1], got 0.0"),
        (
            "compare.label_fractions",
            [0.1, 1.5],
            "compare.label_fractions must be in (0, 1], got 1.5",
        ),
        (
            "compare.label_fractions",
            [-0.1],
            "compare.label_fractions must be in (0, 1], got -0.1",
        ),
        ("compare.margin", 0, "compare.margin must be in (0, 1), got 0.0"),
        ("compare.margin", 1, "compare.margin must be in (0, 1), got 1.0"),
        ("compare.margin", "1pt", "compare.margin must be a number, got '1pt'"),
        (
            "compare.correction",
            "bonferroni",
            "compare.correction must be one of: holm, none (got 'bonferroni')",
        ),
    ],
)
def test_compare_lists_are_validated(raw, key, value, message):
    assert _error(_with(raw, key, value)) == f"params.yaml: {message}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("compare.inits", ["random"]),  # the reference alone is a valid (trivial) comparison
        ("compare.inits", ["kmeans", "random"]),
        ("compare.seeds", [0]),
        ("compare.label_fractions", [1.0]),
        ("compare.label_fractions", [1]),
        ("compare.label_fractions", [0.001, 0.5, 1.0]),
    ],
)
def test_compare_boundary_values_are_accepted(raw, key, value):
    assert getattr(P.parse_params(_with(raw, key, value)).compare, key.split(".")[1]) == value


def test_seed_must_be_one_of_the_compare_seeds(raw):
    mapping = _with(_with(raw, "seed", 5), "compare.seeds", [0, 1, 2])
    message = _error(mapping)
    assert message.startswith("params.yaml: seed must be one of compare.seeds [0, 1, 2]")
    assert "(got 5)" in message
    # The other way round: compare.seeds drops the seed that `seed` names.
    message = _error(_with(_with(raw, "seed", 0), "compare.seeds", [1, 2]))
    assert message.startswith("params.yaml: seed ") and "compare.seeds [1, 2]" in message
    assert "(got 0)" in message
    params = P.parse_params(_with(_with(raw, "seed", 5), "compare.seeds", [0, 5]))
    assert (params.seed, params.compare.seeds) == (5, [0, 5])


# --------------------------------------------------------------------------- YAML 1.2, as DVC


def _edited(text: str, key: str, value: str) -> str:
    """params.yaml ``text`` with the line of the dotted ``key`` (at most one level deep)
    rewritten to ``key: value``, ``value`` written verbatim."""
    lines = text.splitlines()
    start, indent = 0, ""
    if "." in key:
        section, key = key.split(".")
        start = next(
            i for i, line in enumerate(lines) if line.split("#")[0].rstrip() == f"{section}:"
        )
        indent = "  "
    index = next(i for i in range(start, len(lines)) if lines[i].startswith(f"{indent}{key}:"))
    lines[index] = f"{indent}{key}: {value}"
    while index + 1 < len(lines) and lines[index + 1].startswith(f"{indent}- "):
        del lines[index + 1]  # the old value's items, as DVC writes a list (block style)
    return "\n".join(lines) + "\n"


def _load_edited(tmp_path: Path, **edits: str) -> P.Params:
    """load_params on a copy of the repo's params.yaml with ``section__key=text`` edits."""
    text = REPO_PARAMS.read_text(encoding="utf-8")
    for key, value in edits.items():
        text = _edited(text, key.replace("__", "."), value)
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return P.load_params(path)


def test_edit_helper_rewrites_only_the_named_line():
    before = REPO_PARAMS.read_text(encoding="utf-8").splitlines()
    after = _edited("\n".join(before), "finetune.lr", "1e-05").splitlines()
    assert len(after) == len(before)
    (changed,) = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert before[changed].startswith("  lr: ")
    assert after[changed] == "  lr: 1e-05"
    sections = [line for line in before[:changed] if line[:1].isalpha()]
    assert sections[-1] == "finetune:"  # not autoencoder's or simclr's lr


@pytest.mark.parametrize(
    ("written", "expected"), [("1e-05", 0.00001), ("1e-3", 0.001), ("5E-4", 0.0005)]
)
def test_load_params_reads_exponent_floats(tmp_path, written, expected):
    # YAML 1.1 (PyYAML's safe_load) reads these as strings; YAML 1.2, as DVC, as floats.
    lr = _load_edited(tmp_path, finetune__lr=written).finetune.lr
    assert type(lr) is float
    assert lr == expected


@pytest.mark.parametrize("written", ["yes", "no", "on", "off", "Yes", "NO"])
def test_load_params_refuses_yaml_1_1_booleans(tmp_path, written):
    with pytest.raises(ParamsError) as info:
        _load_edited(tmp_path, finetune__freeze_encoder=written)
    assert str(info.value) == (
        f"{tmp_path / 'params.yaml'}: finetune.freeze_encoder must be true or false, "
        f"got '{written}'"
    )


@pytest.mark.parametrize(("written", "expected"), [("true", True), ("False", False)])
def test_load_params_reads_yaml_1_2_booleans(tmp_path, written, expected):
    assert _load_edited(tmp_path, finetune__freeze_encoder=written).finetune.freeze_encoder is (
        expected
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [("010", 10), ("017", 17), ("0x1F", 31), ("0o17", 15)],  # 1.1: 010 = 8, 017 = 15
)
def test_load_params_reads_yaml_1_2_integers(tmp_path, written, expected):
    params = _load_edited(tmp_path, seed=written, compare__seeds=f"[0, {expected}]")
    assert type(params.seed) is int
    assert params.seed == expected


# DVC reads params.yaml with ruamel.yaml's safe loader (YAML 1.2). Scalars that ruamel
# accepts only as its own extensions (1_000, 0b11, +0x1F) are left out: read_yaml keeps
# them as strings, so a key given one fails validation loudly.
DVC_SCALARS = [
    "1e-05", "1e-3", "5E-4", "1.5e-3", "+.5", "1E+2", "1.", "0.001", "1e5", ".inf", "-.inf",
    "010", "017", "08", "00", "-0", "+1", "0x1F", "0o17", "0X1F", "0o8",
    "yes", "no", "on", "off", "y", "n", "true", "True", "TRUE", "False",
    "~", "null", "Null", "12:30", "1e", ".e5", "inf", "NaN", "text",
]  # fmt: skip


@pytest.mark.parametrize("scalar", DVC_SCALARS)
def test_read_yaml_reads_scalars_as_dvc_does(scalar):
    from dvc.utils.serialize import parse_yaml

    ours = yaml12.read_yaml(f"value: {scalar}\n")["value"]
    dvc = parse_yaml(f"value: {scalar}\n", "params.yaml")["value"]
    assert (type(ours), ours) == (type(dvc), dvc)


def test_read_yaml_nan_is_a_float():
    value = yaml12.read_yaml("value: .nan\n")["value"]
    assert type(value) is float and value != value


def test_params_written_by_dvc_modify_yaml_load(tmp_path, raw):
    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    shutil.copyfile(REPO_PARAMS, path)
    with modify_yaml(path) as data:
        data["finetune"]["lr"] = 1e-5
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^  lr: 1e-05\b", text, re.MULTILINE)  # YAML 1.1 reads it as a string
    assert text.count("#") == REPO_PARAMS.read_text(encoding="utf-8").count("#")  # comments kept
    params = P.load_params(path)
    assert params.finetune.lr == 0.00001
    assert params == P.parse_params(_with(raw, "finetune.lr", 0.00001))


def test_params_written_by_dvc_exp_run_set_param_load(tmp_path, raw):
    # What `dvc exp run -S finetune.lr=1e-5 -S ...` does to params.yaml (Hydra overrides).
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copyfile(REPO_PARAMS, path)
    apply_overrides(
        path,
        [
            "finetune.lr=1e-5",
            "finetune.freeze_encoder=true",
            "compare.seeds=[0,1,2,10]",
            "seed=10",
        ],
    )
    assert re.search(r"^  lr: 1e-05\b", path.read_text(encoding="utf-8"), re.MULTILINE)
    expected = _with(raw, "finetune.lr", 0.00001)
    expected = _with(expected, "finetune.freeze_encoder", True)
    expected = _with(_with(expected, "compare.seeds", [0, 1, 2, 10]), "seed", 10)
    assert P.load_params(path) == P.parse_params(expected)


# --------------------------------------------------------------------------- data.bit_depth


@pytest.mark.parametrize("value", ["auto", 8, 10, 12, 14, 16])
def test_bit_depth_takes_auto_or_a_standard_depth(raw, value):
    assert P.parse_params(_with(raw, "data.bit_depth", value)).data.bit_depth == value


@pytest.mark.parametrize("value", [11, 0, 32, "twelve", True, 12.0, None])
def test_bit_depth_names_the_key_and_the_choices(raw, value):
    message = _error(_with(raw, "data.bit_depth", value))
    assert message.startswith(
        "params.yaml: data.bit_depth must be auto or one of: 8, 10, 12, 14, 16"
    )
    assert repr(value) in message


# --------------------------------------------------------------------------- written as DVC writes


@pytest.mark.parametrize(
    ("overrides", "changed"),
    [
        (["init=random"], []),
        (["model.channels=[16,32,64]", "compare.seeds=[0,1,2]"], []),
        (["init=kmeans", "finetune.lr=1e-5"], ["init: kmeans", "  lr: 1e-05"]),
    ],
)
def test_dvc_exp_run_set_changes_only_the_lines_of_the_values_it_sets(tmp_path, overrides, changed):
    """`dvc exp run -S` rewrites params.yaml through DVC's own writer: the committed file is
    written in its style, so an experiment's diff is the values it set, nothing else."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(REPO_PARAMS, path)
    apply_overrides(str(path), overrides)
    before = REPO_PARAMS.read_text(encoding="utf-8").splitlines()
    after = path.read_text(encoding="utf-8").splitlines()
    assert len(after) == len(before)
    diff = [b.split("#")[0].rstrip() for a, b in zip(before, after, strict=True) if a != b]
    assert diff == changed
    P.load_params(path)


def test_corrections_are_the_ones_the_statistics_know():
    from initbench.comparison import stats

    assert stats.CORRECTIONS == P.CORRECTIONS


def test_a_bad_value_that_dvc_templates_into_a_stage_is_named_by_its_key(tmp_path):
    # compare.seeds: [0, 1.5] reaches init_random as `--seed 1.5`: the stage must name the
    # params key, not argparse's flag.
    raw = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    raw["compare"]["seeds"] = [0, 1.5]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "stages.init_random", "--dataset", "missing", "--seed", "1.5",
         "--out", "x.pt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_PARAMS.parent)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == "error: params.yaml: compare.seeds must be an integer, got 1.5"


def _call_lines(tree: ast.AST, name: str) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]  # fmt: skip


def test_every_stage_reads_params_before_its_arguments():
    for path in sorted((REPO_PARAMS.parent / "stages").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loads, parses = _call_lines(tree, "load_params"), _call_lines(tree, "parse_args")
        if loads and parses:
            assert min(loads) < min(parses), f"{path.name} parses its arguments first"
