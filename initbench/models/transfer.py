"""Init checkpoints: one format for every strategy, and one strict way to load them.

An init checkpoint is a dict::

    {"format": "initbench-init/1", "strategy": str, "meta": {...}, "encoder": state_dict}

``meta`` records what the encoder was built for (``in_channels``,
``channels``, ``image_size``) so a mismatch is reported in terms of params,
not tensor shapes alone.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initbench.core.errors import CheckpointError
from initbench.models.cnn import Classifier

FORMAT = "initbench-init/1"

#: meta key -> the params.yaml key that controls it
META_PARAMS = {
    "in_channels": "data.channels",
    "channels": "model.channels",
    "image_size": "data.image_size",
}


def encoder_meta(in_channels: int, channels: Sequence[int], image_size: int) -> dict[str, Any]:
    """What an init checkpoint records of the encoder it holds: input channels
    (``data.channels``), block widths (``model.channels``) and image side in pixels
    (``data.image_size``)."""
    return {"in_channels": in_channels, "channels": list(channels), "image_size": image_size}


def make_checkpoint(strategy: str, encoder: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Package encoder weights (BatchNorm running statistics included) as an init checkpoint."""
    missing = sorted(set(META_PARAMS) - set(meta))
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    return {"format": FORMAT, "strategy": strategy, "meta": dict(meta), "encoder": state}


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load an init checkpoint with ``weights_only=True`` and check its format.

    Raises:
        CheckpointError: missing file, unreadable file or not an init checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: init checkpoint not found; run `dvc repro` to create it")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({exc})".splitlines()[0]
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an initbench init checkpoint (format {FORMAT!r})")
    if not isinstance(checkpoint.get("encoder"), dict) or not isinstance(
        checkpoint.get("meta"), dict
    ):
        raise CheckpointError(
            f"{path}: init checkpoint lacks its encoder weights or meta; re-run its stage"
        )
    return checkpoint


def check_meta(checkpoint: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """Compare what the checkpoint was made for with what the model needs.

    Raises:
        CheckpointError: naming the param that differs, and how to fix it.
    """
    meta = checkpoint.get("meta", {})
    for key, param in META_PARAMS.items():
        if key in expected and meta.get(key) != expected[key]:
            raise CheckpointError(
                f"{source} was made for {param}={meta.get(key)}, but the model needs "
                f"{param}={expected[key]}; re-run its stage (`dvc repro`) or set {param} back"
            )


def load_encoder(model: Classifier, checkpoint: dict[str, Any], source: str) -> None:
    """Copy the checkpoint's encoder into ``model``, strictly.

    Every encoder tensor must be present with the same shape; the only keys of
    ``model`` left untouched are the head's.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped keys, named.
    """
    encoder_state = checkpoint["encoder"]
    own = model.encoder.state_dict()
    for key, tensor in encoder_state.items():
        if key in own and own[key].shape != tensor.shape:
            raise CheckpointError(
                f"{source}: encoder.{key} has shape {tuple(tensor.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model; model.channels or data.channels differ "
                "from when it was made: re-run its stage (`dvc repro`)"
            )
    prefixed = {f"encoder.{k}": v for k, v in encoder_state.items()}
    result = model.load_state_dict(prefixed, strict=False)
    head_keys = {k for k in model.state_dict() if k.startswith("head.")}
    if result.unexpected_keys or set(result.missing_keys) != head_keys:
        missing = sorted(set(result.missing_keys) - head_keys)
        raise CheckpointError(
            f"{source}: encoder keys do not match the model "
            f"(missing: {missing[:5]}, unexpected: {sorted(result.unexpected_keys)[:5]}); "
            "it was made for another architecture: re-run its stage (`dvc repro`)"
        )


def load_init(
    model: Classifier, path: str | os.PathLike[str], expected_meta: dict[str, Any]
) -> str:
    """Load the init checkpoint at ``path`` into ``model``'s encoder; return its strategy.

    The one entry point fine-tuning uses, whatever made the checkpoint: read it
    (``weights_only``), check it was made for this data and architecture, copy the
    encoder strictly; nothing else is checked after the strict load.

    Raises:
        CheckpointError: missing or unreadable file, or a mismatch, named with the param to fix.
    """
    checkpoint = read_checkpoint(path)
    check_meta(checkpoint, expected_meta, str(path))
    load_encoder(model, checkpoint, str(path))
    return str(checkpoint["strategy"])
