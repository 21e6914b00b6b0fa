"""Test helpers: one file decoded as ingest decodes it, and a folder of files as a list."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from initbench.data.decode import (
    DecodeResult,
    bit_depth_of,
    decode_file,
    over_bit_depth,
    to_uint8,
)
from initbench.data.ingest import iter_decoded


def decode_image(
    path: str | os.PathLike[str], image_size: int, channels: int, bit_depth: int | None = None
) -> np.ndarray:
    """uint8 ``(channels, image_size, image_size)``: what ingest stores for this file in a
    folder of its own (``bit_depth`` None: ``data.bit_depth: auto``, the file's own depth).

    Raises:
        ValueError (and the decoder's errors): as :func:`decode_file`, or a value above
            ``bit_depth``.
    """
    decoded = decode_file(path, image_size, channels)
    if isinstance(decoded, np.ndarray):
        return decoded
    depth = bit_depth_of(decoded.max_value) if bit_depth is None else bit_depth
    if decoded.max_value >= 2**depth:
        raise ValueError(over_bit_depth(decoded.max_value, depth))
    return np.broadcast_to(
        to_uint8(decoded.values, depth), (channels, image_size, image_size)
    ).copy()


def decode_all(
    root: Path, relpaths: Sequence[str], image_size: int, channels: int, workers: int | None = None
) -> list[DecodeResult]:
    """:func:`iter_decoded` as a list."""
    return list(iter_decoded(root, relpaths, image_size, channels, workers))
