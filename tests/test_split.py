"""Tests of initbench.data: splitting by duplicate group, stats, the on-disk format, imports."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from initbench.core import files
from initbench.core.errors import DataError
from initbench.data import dataset as ds
from initbench.data import split as sp

REPO = Path(__file__).resolve().parents[1]
VAL, TEST = 0.1, 0.2  # the repo's params.yaml values; min_class_size is 3


def _todays_split(labels: np.ndarray, val: float, test: float, seed: int) -> np.ndarray:
    """The per-sample draw that ingest made before duplicate groups existed (a naive copy)."""
    rng = np.random.default_rng(seed)
    split = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train, n_val, _ = sp.split_sizes(len(members), val, test)
        split[members[n_train : n_train + n_val]] = 1
        split[members[n_train + n_val :]] = 2
    return split


def _grouped_reference(labels: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Naive grouped draw: list groups by first member, split them as samples, copy to members."""
    order: list[int] = []  # group ids in order of first member
    for g in groups.tolist():
        if g not in order:
            order.append(g)
    first_label = np.array([labels[groups.tolist().index(g)] for g in order], dtype=np.int64)
    unit_split = _todays_split(first_label, VAL, TEST, seed)
    return np.array([unit_split[order.index(g)] for g in groups.tolist()], dtype=np.int64)


def _random_groups(rng: np.random.Generator, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and group ids with duplicates inside classes and a few across classes."""
    labels, groups, next_group = [], [], 0
    for label in range(n_classes):
        for _ in range(int(rng.integers(5, 25))):
            copies = int(rng.choice([1, 1, 1, 2, 3]))
            labels += [label] * copies
            groups += [next_group] * copies
            next_group += 1
    labels_arr, groups_arr = np.array(labels), np.array(groups)
    for _ in range(3):  # the same picture filed under another class too
        i = int(rng.integers(len(labels_arr)))
        labels_arr = np.append(labels_arr, (labels_arr[i] + 1) % n_classes)
        groups_arr = np.append(groups_arr, groups_arr[i])
    shuffle = rng.permutation(len(labels_arr))
    return labels_arr[shuffle].astype(np.int64), groups_arr[shuffle] * 7 + 3  # arbitrary ids


# --------------------------------------------------------------------------- imports


@pytest.mark.parametrize(
    "module",
    [
        "initbench.data.dataset",
        "initbench.data.split",
        "initbench.data.decode",
        "initbench.data.ingest",
        "stages.ingest",
    ],
)
def test_importing_does_not_load_torch(module):
    # ingest's decode workers are spawned and import these; torch costs each ~460 MB.
    code = f"import {module}, sys; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_data_does_not_import_the_decoder():
    code = (
        "import initbench.data.dataset, initbench.data.split, sys; "
        "print(sorted({'initbench.data.decode', 'PIL'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- split sizes


def test_split_sizes_and_min_class_size():
    assert sp.split_sizes(10, VAL, TEST) == (7, 1, 2)
    assert sp.split_sizes(3, VAL, TEST) == (1, 1, 1)
    assert sp.split_sizes(100, 0.15, 0.15) == (70, 15, 15)
    assert sp.min_class_size(VAL, TEST) == 3
    assert sp.min_class_size(0.5, 0.4) == 6
    assert sp.split_sizes(6, 0.5, 0.4) == (1, 3, 2)
    assert sp.split_sizes(5, 0.5, 0.4)[0] < 1


# --------------------------------------------------------------------------- duplicate groups


def test_duplicate_groups_number_groups_by_first_image():
    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 256, (3, 4, 4), dtype=np.uint8) for _ in range(3))
    b_one_pixel_off = b.copy()
    b_one_pixel_off[2, 3, 3] ^= 1
    images = np.stack([b, a, b, c, a, b_one_pixel_off, b])
    groups = sp.duplicate_groups(images)
    assert groups.dtype == np.int64
    assert groups.tolist() == [0, 1, 0, 2, 1, 3, 0]


def test_duplicate_groups_of_distinct_images_are_0_to_n():
    images = np.arange(6 * 2 * 3 * 3, dtype=np.uint8).reshape(6, 2, 3, 3)
    assert sp.duplicate_groups(images).tolist() == list(range(6))
    empty = np.zeros((0, 1, 4, 4), dtype=np.uint8)
    assert sp.duplicate_groups(empty).tolist() == []


def test_duplicate_counts():
    groups = np.array([5, 9, 5, 2, 9, 5, 8, 2])
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 2])  # group 2 spans classes 1 and 2
    assert sp.duplicate_counts(groups, labels) == {
        "groups": 3,  # 5 (x3), 9 (x2), 2 (x2)
        "images": 4,  # 2 + 1 + 1
        "cross_class_groups": 1,
    }
    assert sp.duplicate_counts(np.arange(4), np.array([0, 1, 0, 1])) == {
        "groups": 0,
        "images": 0,
        "cross_class_groups": 0,
    }


# --------------------------------------------------------------------------- stratified split

# Drawn by ingest.stratified_split before duplicate groups were added (commit 6c7c53f):
# on data without duplicates the split must stay byte-identical.
GOLDEN_LABELS = [1, 1, 2, 2, 0, 0, 2, 1, 0, 1, 0, 0, 2, 2, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0]
GOLDEN_SPLITS = {
    0: [0, 2, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0, 0, 0, 2, 0, 0],
    3: [0, 2, 2, 0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 2, 0, 0],
    12345: [0, 0, 0, 0, 1, 0, 1, 0, 2, 0, 0, 0, 0, 2, 2, 2, 0, 0, 2, 0, 0, 1, 0, 0, 0],
}


@pytest.mark.parametrize("seed", list(GOLDEN_SPLITS))
def test_split_without_duplicates_is_byte_identical_to_before(seed):
    labels = np.array(GOLDEN_LABELS, dtype=np.int64)
    n = len(labels)
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)  # all distinct
    for groups in (None, np.arange(n), sp.duplicate_groups(images), np.arange(n) * 5 + 2):
        split = sp.stratified_split(labels, VAL, TEST, seed, groups)
        assert split.dtype == np.int64
        assert split.tolist() == GOLDEN_SPLITS[seed]
        assert split.tobytes() == _todays_split(labels, VAL, TEST, seed).tobytes()


@pytest.mark.parametrize("seed", range(5))
def test_split_without_duplicates_matches_the_per_sample_draw(seed):
    labels = np.random.default_rng(100 + seed).integers(0, 4, 200)
    grouped = sp.stratified_split(labels, VAL, TEST, seed, np.arange(len(labels)))
    np.testing.assert_array_equal(grouped, _todays_split(labels, VAL, TEST, seed))


@pytest.mark.parametrize("seed", range(6))
def test_every_duplicate_group_lands_in_one_split(seed):
    labels, groups = _random_groups(np.random.default_rng(seed))
    split = sp.stratified_split(labels, VAL, TEST, seed, groups)
    for g in np.unique(groups):
        assert len(set(split[groups == g].tolist())) == 1, f"group {g} spans splits"
    np.testing.assert_array_equal(split, _grouped_reference(labels, groups, seed))


@pytest.mark.parametrize("seed", range(4))
def test_groups_are_split_in_class_proportions(seed):
    labels, groups = _random_groups(np.random.default_rng(50 + seed))
    split = sp.stratified_split(labels, VAL, TEST, seed, groups)
    _, first = np.unique(groups, return_index=True)  # each group's first member
    for label in np.unique(labels):
        mine = first[labels[first] == label]
        got = np.bincount(split[mine], minlength=3)
        assert tuple(got.tolist()) == sp.split_sizes(len(mine), VAL, TEST), label


def test_cross_class_group_is_split_under_its_first_members_class():
    # 3 groups per class; group 10 is labelled 1 first and 0 later: it counts for class 1.
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    groups = np.array([1, 2, 3, 10, 11, 12, 13, 10])
    assert sp.group_labels(groups, labels).tolist() == [0, 0, 0, 1, 1, 1, 1]
    for seed in range(10):
        split = sp.stratified_split(labels, VAL, TEST, seed, groups)
        assert split[3] == split[7]
        assert sorted(split[:3].tolist()) == [0, 1, 2]  # class 0: 3 groups -> 1/1/1
        assert np.bincount(split[3:7], minlength=3).tolist() == [2, 1, 1]  # class 1: 4 groups


def test_group_ids_do_not_change_the_split():
    labels, groups = _random_groups(np.random.default_rng(9))
    ids = np.unique(groups)
    new_ids = np.random.default_rng(1).permutation(1000)[: len(ids)]
    renamed = dict(zip(ids.tolist(), new_ids.tolist(), strict=True))
    other = np.array([renamed[g] for g in groups.tolist()])
    np.testing.assert_array_equal(
        sp.stratified_split(labels, VAL, TEST, 4, groups),
        sp.stratified_split(labels, VAL, TEST, 4, other),
    )


def test_class_with_too_few_groups_is_a_value_error():
    labels = np.array([0, 0, 0, 1, 1, 1])
    groups = np.array([0, 1, 2, 3, 3, 4])  # class 1: 2 groups, needs 3
    with pytest.raises(ValueError, match="class 1 has 2 group"):
        sp.stratified_split(labels, VAL, TEST, 0, groups)
    with pytest.raises(ValueError, match="6 labels"):
        sp.stratified_split(labels, VAL, TEST, 0, groups[:5])


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_stats_matches_float64_reference(channels):
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (7, channels, 9, 11), dtype=np.uint8)
    images[0, 0] = 255  # make channels differ a little more
    mean, std = ds.channel_stats(images)
    ref = images.astype(np.float64) / 255.0
    assert len(mean) == len(std) == channels
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), atol=1e-6, rtol=0)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), atol=1e-6, rtol=0)
    assert all(isinstance(v, float) for v in mean + std)


def test_channel_stats_do_not_depend_on_the_chunk_size():
    images = np.random.default_rng(3).integers(0, 256, (10, 3, 5, 7), dtype=np.uint8)
    assert ds.channel_stats(images, chunk=3) == ds.channel_stats(images, chunk=1024)
    mean, std = ds.channel_stats(images, chunk=4)
    reference = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(std, reference.std(axis=(0, 2, 3)), atol=1e-6)


# --------------------------------------------------------------------------- on disk


def test_save_then_load_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, 1, 4, 4), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 1], dtype=np.int64)
    split = np.array([0, 0, 1, 2, 0, 0, 2, 1, 0], dtype=np.int64)
    dataset = ds.Dataset(
        classes=["ant", "bee"],
        paths=[f"{'ab'[y]}/{i}.png" for i, y in enumerate(labels)],
        images=images,
        labels=labels,
        split=split,
        groups=np.arange(9),
        skipped=[],
        ignored={},
    )
    meta = ds.save_dataset(tmp_path, dataset)
    loaded = ds.load_dataset(tmp_path)
    assert loaded.classes == ["ant", "bee"]
    assert (loaded.image_size, loaded.channels) == (4, 1) == (meta["image_size"], meta["channels"])
    assert (loaded.mean, loaded.std) == ds.channel_stats(images[split == 0])
    for i, name in enumerate(ds.SPLITS):
        np.testing.assert_array_equal(loaded.splits[name].images.numpy(), images[split == i])
        np.testing.assert_array_equal(loaded.splits[name].labels.numpy(), labels[split == i])
    with (tmp_path / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows] == [ds.SPLITS[s] for s in split]
    assert [r["class"] for r in rows] == [dataset.classes[y] for y in labels]


def test_load_of_a_missing_dataset_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"classes\.json: missing; run the ingest stage"):
        ds.load_dataset(tmp_path)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5),
        np.arange(7, dtype=np.int64),
        np.zeros((0, 1, 4, 4), dtype=np.uint8),
        np.float32(2.5) * np.ones((3, 9), dtype=np.float32),
        np.array(3.0),
    ],
)
def test_write_npy_writes_the_bytes_of_np_save(tmp_path, array):
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    files.write_npy(tmp_path / "a.npy", array, chunk=1)
    assert (tmp_path / "a.npy").read_bytes() == buf.getvalue()


def test_write_npy_streams_the_selected_rows_in_chunks(tmp_path):
    """The rows of one split go out a chunk at a time, never as one copy of the split."""

    fetched: list[int] = []

    class Rows(np.ndarray):
        def __getitem__(self, index):
            if isinstance(index, np.ndarray):
                fetched.append(len(index))
            return np.asarray(self).__getitem__(index)

    images = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3).view(Rows)
    rows = np.array([1, 4, 5, 8, 9])
    files.write_npy(tmp_path / "s.npy", images, rows, chunk=2)
    assert fetched == [2, 2, 1]
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.asarray(images)[rows])


def test_write_npy_refuses_python_objects_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="without pickle"):
        files.write_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []


def test_channel_stats_of_rows_equal_those_of_the_selection():
    images = np.random.default_rng(4).integers(0, 256, (12, 3, 4, 4), dtype=np.uint8)
    rows = np.array([0, 3, 4, 10])
    assert ds.channel_stats(images, chunk=3, rows=rows) == ds.channel_stats(images[rows])


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12.0).reshape(3, 4).T,  # Fortran order: np.save keeps it
        np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2],  # not contiguous
        np.arange(6, dtype=">u4").reshape(3, 2),  # big-endian
    ],
)
def test_write_npy_writes_np_saves_bytes_for_any_layout(tmp_path, array):
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    files.write_npy(tmp_path / "a.npy", array)
    assert (tmp_path / "a.npy").read_bytes() == buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, array[[2, 0]], allow_pickle=False)
    files.write_npy(tmp_path / "r.npy", array, [2, 0])
    assert (tmp_path / "r.npy").read_bytes() == buf.getvalue()


def test_write_npy_refuses_a_boolean_mask_as_rows(tmp_path):
    with pytest.raises(ValueError, match="integer indices"):
        files.write_npy(tmp_path / "m.npy", np.zeros((3, 2)), np.array([True, False, True]))


# --------------------------------------------------------------------------- label fractions


def test_subset_sizes_keep_one_image_a_class_at_least():
    assert sp.subset_sizes([100, 42, 7], 0.05) == [5, 2, 1]  # 0.35 rounds to 0: the floor
    assert sp.subset_sizes([100, 42, 0], 0.05) == [5, 2, 0]  # an empty class keeps none
    assert sp.subset_sizes([100, 42, 7], 1.0) == [100, 42, 7]
    # 420 images in 10 classes: "1%" keeps 10 images, 2.4%; 2% keeps the same 10.
    assert sum(sp.subset_sizes([42] * 10, 0.01)) == 10
    assert sp.realised_fraction([42] * 10, 0.01) == pytest.approx(10 / 420)


def test_label_subset_keeps_subset_sizes_of_each_class():
    import torch

    labels = torch.tensor([0] * 100 + [1] * 42 + [2] * 7)
    keep = sp.label_subset(labels, 0.05, seed=3)
    assert torch.bincount(labels[keep]).tolist() == sp.subset_sizes([100, 42, 7], 0.05)


def test_floor_warning_names_the_key_and_the_realised_fraction():
    warning = sp.floor_warning([42] * 10, 0.01, "compare.label_fractions")
    assert warning == ("warning: compare.label_fractions 0.01 keeps 10 of 420 train images "
                       "(2.4%, not 1.0%): every class keeps at least one labelled image; "
                       "reports give the realised fraction")  # fmt: skip
    assert sp.floor_warning([700] * 10, 0.01, "compare.label_fractions") is None
    # Raised, but by less than half: 0.01 of 80 a class keeps 1 (1.25%).
    assert sp.floor_warning([80] * 10, 0.01, "finetune.label_fraction") is None


def test_identical_subsets_names_the_first_two_fractions_that_coincide():
    assert sp.identical_subsets([42] * 10, [0.01, 0.02, 0.05]) == (0.01, 0.02)
    assert sp.identical_subsets([700] * 10, [0.01, 0.02, 0.05]) is None
    assert sp.identical_subsets([42] * 10, [0.5, 1.0]) is None
