"""Atomic file output: write to a temporary file beside the target, then rename.

A stage that is killed half-way never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` (parent folders created) only when the block
    ends without an exception; until then it is a hidden temporary file beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders."""
    with atomic_writer(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON with a trailing newline (stable bytes for git)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_npy(
    path: str | os.PathLike[str],
    array: np.ndarray,
    rows: Sequence[int] | np.ndarray | None = None,
    chunk: int = 4096,
) -> None:
    """Write ``array[rows]`` (all of ``array`` by default) as ``.npy``, atomically, with the
    bytes of ``np.save``. With ``rows`` (integer indices along the first axis) the format's
    header goes first, then ``chunk`` rows at a time, so no copy of the selection is ever
    held whole (``array`` may be memory-mapped); without, ``np.save`` writes the array.

    Raises:
        ValueError: ``array`` holds Python objects, which ``.npy`` can only pickle; or
            ``rows`` is not integer indices (a boolean mask, say).
    """
    if array.dtype.hasobject:
        raise ValueError(f"{path}: cannot write an array of Python objects without pickle")
    if rows is None:
        with atomic_writer(path) as f:
            np.save(f, array, allow_pickle=False)
        return
    rows = np.asarray(rows)
    if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"{path}: rows must be a 1-D sequence of integer indices")
    rows = rows.astype(np.int64)
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": (len(rows), *array.shape[1:])}  # fmt: skip
    with atomic_writer(path) as f:
        try:
            np.lib.format.write_array_header_1_0(f, header)
        except ValueError:  # a header over 64 KiB (a dtype of thousands of fields)
            np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, len(rows), chunk):
            f.write(np.ascontiguousarray(array[rows[start : start + chunk]]).tobytes())


def write_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` through memory, so the archive name inside does not depend on a temp name."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as a PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
