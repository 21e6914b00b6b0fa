"""The embedded default dataset: Animal-Shape (MIT), 10 classes x 1,000 silhouettes, 28x28.

It ships inside the PyPI package ``animal-mnist==0.4`` as two gzipped numpy
pickles. We read them with an unpickler that admits only numpy array
reconstruction, and write them out as ``<out>/<class>/<index>.png``.

Usage (the Makefile runs this before ``dvc repro``)::

    python -m initbench.data.embedded data
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import pickle
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from initbench.core.errors import DataError, InitbenchError

CLASS_NAMES: tuple[str, ...] = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)  # fmt: skip
PACKAGE = "animal_mnist"
DATA_FILE = "data/Animal_MNIST/animal_data_version_3.gz"
LABEL_FILE = "data/Animal_MNIST/animal_label_version_3.gz"


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that reconstructs numpy arrays and nothing else.

    Plain ``pickle.load`` runs whatever callable a file names; this one refuses
    every global except those that ``ndarray.__reduce__`` uses.

    Raises:
        pickle.UnpicklingError: on any other global (``os.system``, ``builtins.eval``, ...).
    """

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),  # protocols 2-4
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol 2 stores raw bytes as latin-1 text
    })  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: only numpy arrays are allowed"
            )
        if module.startswith("numpy.core."):  # numpy 2 moved these; skip the deprecation shim
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def load_numpy_pickle(stream: BinaryIO) -> np.ndarray:
    """Load one numpy array from a pickle stream, refusing anything else.

    Raises:
        pickle.UnpicklingError: if the pickle names anything but numpy array reconstruction,
            or does not hold a plain (non-object) ndarray.
    """
    obj = NumpyOnlyUnpickler(stream).load()
    if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
        raise pickle.UnpicklingError(f"expected a numeric numpy array, got {type(obj).__name__}")
    return obj


def load_animal_shape() -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 ``(10000, 28, 28)`` and int64 ``(10000,)``.

    Raises:
        DataError: if ``animal-mnist`` is not installed or its files are not what we expect.
    """
    try:
        root = resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise DataError(
            "the embedded dataset needs the package animal-mnist==0.4: "
            "run `make repro`, or `pip install --no-deps animal-mnist==0.4`"
        ) from None
    arrays = []
    for name in (DATA_FILE, LABEL_FILE):
        with (root / name).open("rb") as raw, gzip.open(raw) as f:
            arrays.append(load_numpy_pickle(f))
    images, labels = arrays
    if images.shape[1:] != (28, 28) or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise DataError(f"{PACKAGE}: unexpected array shapes {images.shape}, {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{PACKAGE}: labels outside 0..{len(CLASS_NAMES) - 1}")
    return images, labels.astype(np.int64)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` array as a PNG with no metadata: same bytes with the pinned Pillow."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


#: What ``dvc add data`` records for the embedded dataset (``data.dvc``'s ``md5``).
EMBEDDED_DVC_MD5 = "6d9cd6b8334f01a346c39563d7b750f1.dir"


def tracked_other_dataset(out_dir: Path) -> str | None:
    """When ``<out_dir>.dvc`` (beside ``out_dir``) records a dataset other than the
    embedded one, a one-line message saying how to bring it back; else ``None``.

    Writing the embedded dataset there would make the next ``dvc repro`` replace the
    user's dataset in that file with it.
    """
    dvc_file = out_dir.parent / f"{out_dir.name}.dvc"
    try:
        text = dvc_file.read_text(encoding="utf-8")
    except OSError:
        return None
    if EMBEDDED_DVC_MD5 in text:
        return None
    files = next((line.split(":")[1].strip() for line in text.splitlines()
                  if line.strip().startswith("nfiles:")), "its")  # fmt: skip
    return (
        f"{out_dir}/ is missing or empty, but {dvc_file} records another dataset ({files} "
        f"files). Bring it back with `dvc checkout {dvc_file}` (or `dvc pull {dvc_file}` "
        f"from a DVC remote); to use the embedded dataset instead, delete {dvc_file} first"
    )


def holds_dataset(out_dir: Path) -> bool:
    """True if ``out_dir`` exists and has any entry (we never write into someone's folder)."""
    return out_dir.is_dir() and any(out_dir.iterdir())


def materialize(
    out_dir: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> bool:
    """Write ``images`` as ``out_dir/<class>/<index>.png``; return False if it was left alone.

    The folder is built beside ``out_dir`` and renamed into place, so an
    interrupted run leaves no half-written dataset.

    Raises:
        DataError: if ``out_dir`` exists and is not a folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; move it away first")
    if holds_dataset(out_dir):
        return False
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name in class_names:
            (tmp / name).mkdir(parents=True)
        width = len(str(len(images) - 1))
        for index in tqdm(range(len(images)), desc=f"writing {out_dir}/", unit="img", disable=None):
            path = tmp / class_names[labels[index]] / f"{index:0{width}d}.png"
            path.write_bytes(png_bytes(images[index]))
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to create, e.g. data")
    args = parser.parse_args(argv)
    try:
        if holds_dataset(args.out_dir):
            print(f"{args.out_dir}/ already holds a dataset; leaving it untouched.")
            return 0
        other = tracked_other_dataset(args.out_dir)
        if other is not None:
            print(f"error: {other}", file=sys.stderr)
            return 1
        images, labels = load_animal_shape()
        materialize(args.out_dir, images, labels)
    except (InitbenchError, pickle.UnpicklingError, OSError, EOFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(images)} images of {len(CLASS_NAMES)} classes to {args.out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
