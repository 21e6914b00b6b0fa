"""Tests of initbench.data.embedded: the safe unpickler, the packaged dataset and materialize()."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from initbench.core.errors import DataError
from initbench.data import embedded

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- unpickler

ARRAYS = {
    "uint8-2d": np.arange(12, dtype=np.uint8).reshape(3, 4),
    "int64": np.array([-3, 0, 7], dtype=np.int64),
    "float32-fortran": np.asfortranarray(np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)),
}


@pytest.mark.parametrize("name", list(ARRAYS))
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_loads_numpy_array_pickles(protocol, name):
    array = ARRAYS[name]
    loaded = embedded.load_numpy_pickle(io.BytesIO(pickle.dumps(array, protocol=protocol)))
    assert isinstance(loaded, np.ndarray)
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


class _SystemPayload:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


class _EvalPayload:
    def __reduce__(self):
        return (builtins.eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_refuses_os_system_without_running_it(tmp_path, protocol):
    target = tmp_path / "somefile"
    payload = pickle.dumps(_SystemPayload(target), protocol=protocol)
    assert b"system" in payload  # the payload really names os.system
    with pytest.raises(pickle.UnpicklingError, match="system"):
        embedded.load_numpy_pickle(io.BytesIO(payload))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_refuses_builtins_eval():
    payload = pickle.dumps(_EvalPayload(), protocol=4)
    assert b"eval" in payload
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        embedded.load_numpy_pickle(io.BytesIO(payload))


def test_unpickler_itself_refuses_globals():
    payload = pickle.dumps(_EvalPayload(), protocol=4)
    with pytest.raises(pickle.UnpicklingError):
        embedded.NumpyOnlyUnpickler(io.BytesIO(payload)).load()


@pytest.mark.parametrize("protocol", [4, 5])
def test_refuses_object_dtype_array(protocol):
    payload = pickle.dumps(np.array([{"a": 1}], dtype=object), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError):
        embedded.load_numpy_pickle(io.BytesIO(payload))


@pytest.mark.parametrize("obj", [[1, 2, 3], {"a": 1}, "text", 3])
def test_refuses_non_array_objects(obj):
    with pytest.raises(pickle.UnpicklingError, match="numpy array"):
        embedded.load_numpy_pickle(io.BytesIO(pickle.dumps(obj, protocol=4)))


# --------------------------------------------------------------------------- packaged data


@pytest.fixture(scope="module")
def animal():
    return embedded.load_animal_shape()


def test_load_animal_shape(animal):
    images, labels = animal
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert images.max() > images.min()  # not blank
    assert len(embedded.CLASS_NAMES) == 10


# --------------------------------------------------------------------------- materialize


@pytest.fixture(scope="module")
def subset(animal):
    images, labels = animal
    index = np.arange(0, 10000, 334)  # 30 images spread over all classes
    assert len(index) == 30
    return images[index], labels[index]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_materialize_writes_class_folders_of_pngs(tmp_path, subset):
    images, labels = subset
    out = tmp_path / "data"
    assert embedded.materialize(out, images, labels) is True
    files = _tree(out)
    expected = {f"{embedded.CLASS_NAMES[labels[i]]}/{i:02d}.png" for i in range(len(images))}
    assert set(files) == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(embedded.CLASS_NAMES)
    for i in range(len(images)):
        path = out / embedded.CLASS_NAMES[labels[i]] / f"{i:02d}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), images[i])  # exact round trip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temp folder left


def test_materialize_is_byte_identical_across_runs(tmp_path, subset):
    images, labels = subset
    assert embedded.materialize(tmp_path / "one", images, labels)
    assert embedded.materialize(tmp_path / "two", images, labels)
    first, second = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert len(first) == len(images)
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_materialize_leaves_a_non_empty_folder_alone(tmp_path, subset):
    out = tmp_path / "data"
    out.mkdir()
    mine = out / "mine.txt"
    mine.write_text("my own data\n")
    stat = mine.stat()
    assert embedded.materialize(out, *subset) is False
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert mine.read_text() == "my own data\n"
    assert mine.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_materialize_fills_an_empty_existing_folder(tmp_path, subset):
    out = tmp_path / "data"
    out.mkdir()
    assert embedded.materialize(out, *subset) is True
    assert len(_tree(out)) == len(subset[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_materialize_refuses_a_file_in_the_way(tmp_path, subset):
    out = tmp_path / "data"
    out.write_text("a file, not a folder")
    with pytest.raises(DataError, match="not a folder") as info:
        embedded.materialize(out, *subset)
    assert str(out) in str(info.value)
    assert out.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_materialize_cleans_up_after_a_failure(tmp_path, subset, monkeypatch):
    calls = []

    def failing_png(image):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return b"png"

    monkeypatch.setattr(embedded, "png_bytes", failing_png)
    with pytest.raises(RuntimeError, match="disk full"):
        embedded.materialize(tmp_path / "data", *subset)
    assert list(tmp_path.iterdir()) == []  # neither data/ nor a temp folder


# --------------------------------------------------------------------------- png and main


def test_png_round_trip_is_exact():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    data = embedded.png_bytes(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data == embedded.png_bytes(image.copy())  # deterministic
    with Image.open(io.BytesIO(data)) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), image)


def test_main_skips_a_folder_that_holds_data(tmp_path, capsys, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.png").write_bytes(b"user")

    def must_not_load():
        raise AssertionError("load_animal_shape should not be called")

    monkeypatch.setattr(embedded, "load_animal_shape", must_not_load)
    assert embedded.main([str(out)]) == 0
    captured = capsys.readouterr()
    assert "already holds a dataset" in captured.out
    assert str(out) in captured.out
    assert _tree(out) == {"keep.png": b"user"}


def test_main_writes_the_dataset(tmp_path, capsys, monkeypatch, subset):
    monkeypatch.setattr(embedded, "load_animal_shape", lambda: subset)
    out = tmp_path / "data"
    assert embedded.main([str(out)]) == 0
    assert f"wrote {len(subset[0])} images of 10 classes" in capsys.readouterr().out
    assert len(_tree(out)) == len(subset[0])


def test_main_reports_a_file_in_the_way_as_one_line(tmp_path, capsys, monkeypatch, subset):
    monkeypatch.setattr(embedded, "load_animal_shape", lambda: subset)
    out = tmp_path / "data"
    out.write_text("x")
    assert embedded.main([str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a folder" in err
    assert err.count("\n") == 1


def test_main_will_not_replace_a_users_tracked_dataset(tmp_path, capsys, monkeypatch, subset):
    """`rm -rf data` then `make repro`: data.dvc records the user's own images, so writing
    the embedded ones would make `dvc repro` record them in its place."""
    monkeypatch.setattr(embedded, "load_animal_shape", lambda: subset)
    (tmp_path / "data.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  nfiles: 420\n  path: data\n"
    )
    assert embedded.main([str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records another dataset (420 files)" in err
    assert f"dvc checkout {tmp_path / 'data.dvc'}" in err
    assert not (tmp_path / "data").exists()


def test_main_writes_the_embedded_dataset_its_dvc_file_records(tmp_path, monkeypatch, subset):
    """A fresh clone: data.dvc records the embedded dataset, which `make data` writes."""
    monkeypatch.setattr(embedded, "load_animal_shape", lambda: subset)
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    assert embedded.EMBEDDED_DVC_MD5 in (REPO / "data.dvc").read_text()
    assert embedded.main([str(tmp_path / "data")]) == 0
    assert len(_tree(tmp_path / "data")) == len(subset[0])
