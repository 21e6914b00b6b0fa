"""Splits and label subsets: the stratified train/val/test split over duplicate groups, and
the nested stratified label subsets of the comparison.

Splits are drawn per *duplicate group*: images with identical decoded pixels
form one group and always land in the same split, so no test or val image has
an exact copy in train.

"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` counts for a class of ``n`` images; val and test get at least 1."""
    n_val = max(1, math.floor(n * val_fraction + 0.5))
    n_test = max(1, math.floor(n * test_fraction + 0.5))
    return n - n_val - n_test, n_val, n_test


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """The fewest images (or duplicate groups) a class needs for at least one in each split."""
    n = 3
    while split_sizes(n, val_fraction, test_fraction)[0] < 1:
        n += 1
    return n


def duplicate_groups(images: np.ndarray) -> np.ndarray:
    """Group id of each image; exact duplicates (identical bytes) share one.

    Ids count up from 0 in order of each group's first image, so an array
    without duplicates gets ``0, 1, ..., N-1``. Images are compared by their
    BLAKE2b digest (256 bits; a collision is not a practical concern).

    Args:
        images: ``(N, ...)``, e.g. uint8 ``(N, C, H, W)``; every image has the same shape.

    Returns:
        int64 ``(N,)``.
    """
    first_seen: dict[bytes, int] = {}
    groups = np.empty(len(images), dtype=np.int64)
    for i, image in enumerate(images):
        digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=32).digest()
        groups[i] = first_seen.setdefault(digest, len(first_seen))
    return groups


def _canonical_groups(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(member_group, first_member)``: groups renumbered ``0..G-1`` by first member.

    ``member_group`` is int64 ``(N,)``, ``first_member`` int64 ``(G,)`` (increasing).
    """
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)].astype(np.int64), first[order].astype(np.int64)


def duplicate_counts(groups: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """How many duplicates ``groups`` (from :func:`duplicate_groups`) holds.

    Args:
        groups: int64 ``(N,)`` group ids.
        labels: int64 ``(N,)`` class labels.

    Returns:
        ``{"groups": groups with more than one image, "images": images beyond the first
        of each group, "cross_class_groups": groups whose images carry different labels}``.
    """
    member_group, first = _canonical_groups(np.asarray(groups))
    sizes = np.bincount(member_group, minlength=len(first))
    mixed = labels != labels[first][member_group]
    cross_class = np.unique(member_group[mixed])
    return {
        "groups": int((sizes > 1).sum()),
        "images": len(member_group) - len(first),
        "cross_class_groups": len(cross_class),
    }


def group_labels(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class each group is split under: the label of its first image.

    Returns:
        int64 ``(G,)``, indexed by group in order of first image.
    """
    _, first = _canonical_groups(np.asarray(groups))
    return np.asarray(labels)[first].astype(np.int64)


def stratified_split(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Assign each sample a split (0 train, 1 val, 2 test), class by class, from ``seed``.

    The draw is over groups: each group of exact duplicates (``groups``, e.g. from
    :func:`duplicate_groups`) is one unit, and every member takes its group's
    split. A group counts for the class of its first member (the lowest index),
    even if other members are labelled differently. Every class's groups are split
    in the same proportions (:func:`split_sizes`), so class balance holds in each
    split. Without ``groups``, or when every group has one member, the result is
    the plain per-sample draw (identical bytes for the same ``seed``).

    Args:
        labels: int64 ``(N,)``.
        groups: ``(N,)`` group ids; any ids, only which samples share one matters.

    Returns:
        int64 ``(N,)``.

    Raises:
        ValueError: if ``groups`` has the wrong length, or a class has fewer than
            :func:`min_class_size` groups.
    """
    labels = np.asarray(labels)
    if groups is None:
        member_group, first = np.arange(len(labels)), np.arange(len(labels))
    else:
        if len(groups) != len(labels):
            raise ValueError(f"groups has {len(groups)} entries for {len(labels)} labels")
        member_group, first = _canonical_groups(np.asarray(groups))
    unit_labels = labels[first]
    needed = min_class_size(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    unit_split = np.zeros(len(first), dtype=np.int64)
    for label in np.unique(unit_labels):
        members = rng.permutation(np.flatnonzero(unit_labels == label))
        if len(members) < needed:
            raise ValueError(
                f"class {label} has {len(members)} group(s); needs at least {needed} "
                f"for val_fraction={val_fraction:g}, test_fraction={test_fraction:g}"
            )
        n_train, n_val, _ = split_sizes(len(members), val_fraction, test_fraction)
        unit_split[members[n_train : n_train + n_val]] = 1
        unit_split[members[n_train + n_val :]] = 2
    return unit_split[member_group]


def subset_sizes(class_counts: Sequence[int], fraction: float) -> list[int]:
    """Images per class that :func:`label_subset` keeps of classes of ``class_counts``
    images: ``round(fraction * n)``, at least one of a class that has any (the floor that
    raises a small nominal fraction), all of them at ``fraction >= 1``."""
    if fraction >= 1:
        return [int(n) for n in class_counts]
    return [max(1, round(fraction * int(n))) if n else 0 for n in class_counts]


def realised_fraction(class_counts: Sequence[int], fraction: float) -> float:
    """The share of the images that the labelled subset of ``fraction`` really holds."""
    return sum(subset_sizes(class_counts, fraction)) / sum(class_counts)


#: A nominal label fraction raised by the one-per-class floor above this factor is warned of.
FLOOR_WARNING = 1.5


def floor_warning(class_counts: Sequence[int], fraction: float, key: str) -> str | None:
    """A one-line warning when the one-per-class floor raises ``fraction`` (the params key
    ``key``) by more than half, else ``None``."""
    realised = realised_fraction(class_counts, fraction)
    if realised <= FLOOR_WARNING * fraction:
        return None
    return (f"warning: {key} {fraction:g} keeps {sum(subset_sizes(class_counts, fraction))} of "
            f"{sum(class_counts)} train images ({realised:.1%}, not {fraction:.1%}): every "
            "class keeps at least one labelled image; reports give the realised fraction")  # fmt: skip


def identical_subsets(
    class_counts: Sequence[int], fractions: Sequence[float]
) -> tuple[float, float] | None:
    """Two of ``fractions`` whose labelled subsets are identical (the same images per class,
    so, the draws being nested, the same images), else ``None``."""
    seen: dict[tuple[int, ...], float] = {}
    for fraction in fractions:
        sizes = tuple(subset_sizes(class_counts, fraction))
        if sizes in seen:
            return seen[sizes], fraction
        seen[sizes] = fraction
    return None


def label_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a stratified ``fraction`` of ``labels`` (:func:`subset_sizes` per class),
    sorted. Nested: at one seed, a smaller fraction's subset is part of a larger one's.

    ``fraction == 1`` returns every index.
    """
    import torch

    if fraction >= 1:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        (count,) = subset_sizes([len(members)], fraction)
        keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.sort(torch.cat(keep)).values
