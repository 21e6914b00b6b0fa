"""Tests of initbench.params: the repo's params.yaml and every validation rule."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from initbench import params as P
from initbench.errors import ParamsError

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
    assert isinstance(params.data, P.DataParams)
    assert isinstance(params.data.image_size, int)
    assert params.data.channels in (1, 3)
    assert isinstance(params.data.val_fraction, float)
    assert isinstance(params.data.test_fraction, float)
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
    "key", ["init", "seed", "device", "data", "data.channels", "model.hidden", "finetune.lr"]
)
def test_missing_key_is_named(raw, key):
    message = _error(_without(raw, key))
    assert message == f"params.yaml: {key} is missing"


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (
            "learning_rate",
            "init, seed, device, data, model, patches, kmeans, autoencoder, simclr, finetune",
        ),
        ("data.size", "image_size, channels, val_fraction, test_fraction"),
        ("finetune.momentum", "epochs, lr, batch_size, label_fraction, freeze_encoder"),
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
