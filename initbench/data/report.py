"""The ingest report: what a folder gave (counts per split and class, skipped and ignored
files, duplicates, high-bit-depth mapping), as ``artifacts/dataset/ingest.json`` holds it
and as the ingest stage prints it."""

from __future__ import annotations

from initbench.data.dataset import SPLITS, Dataset
from initbench.data.split import duplicate_counts


def summary(dataset: Dataset) -> dict:
    """The ``metrics/ingest.json`` content: counts per split and class, skipped and ignored files.

    Returns:
        ``{"images", "classes", "split": {split: n}, "per_class": [{"class", split: n}],
        "skipped": {"count", "files": [{"path", "reason"}]}, "ignored": {kind: n},
        "ignored_files": {kind: [path]}, "duplicates": {"groups", "images",
        "cross_class_groups"}}`` and, when the folder held integer images of more than 8
        bits, ``"high_bit_depth": {"images", "bit_depth", "max_value", "bit_depth_param"}``;
        when it held small pictures or slivers, ``"flagged": {kind: [{"path", "note"}]}``;
        where ``duplicates`` counts groups of more than one
        identical image, the images beyond the first of each group, and the groups
        whose images sit in more than one class folder.
    """
    # A list, not a dict keyed by class: `dvc metrics show` tabulates only the scalars,
    # so the table stays readable with 10 or 100 classes.
    per_class = []
    for label, name in enumerate(dataset.classes):
        in_class = dataset.split[dataset.labels == label]
        per_class.append(
            {"class": name} | {s: int((in_class == i).sum()) for i, s in enumerate(SPLITS)}
        )
    return (
        {
            "images": len(dataset.labels),
            "classes": len(dataset.classes),
            "split": {s: int((dataset.split == i).sum()) for i, s in enumerate(SPLITS)},
            "per_class": per_class,
            "skipped": {"count": len(dataset.skipped), "files": dataset.skipped},
            "ignored": {kind: len(paths) for kind, paths in dataset.ignored.items()},
            "ignored_files": dataset.ignored,
            "duplicates": duplicate_counts(dataset.groups, dataset.labels),
        }
        | ({"high_bit_depth": dataset.high_bit} if dataset.high_bit else {})
        | ({"flagged": dataset.flagged} if dataset.flagged else {})
    )


#: A largest class over this many times the smallest is reported: accuracy then rewards
#: answering the largest class, and macro-F1 tells the models apart.
IMBALANCE = 10


def imbalance_warning(per_class: list[dict]) -> str | None:
    """One line when the largest class (all splits) holds more than :data:`IMBALANCE` times
    the images of the smallest, else ``None``. ``per_class`` as in :func:`summary`."""
    sizes = {row["class"]: sum(row[s] for s in SPLITS) for row in per_class}
    largest, smallest = max(sizes, key=sizes.get), min(sizes, key=sizes.get)
    if sizes[largest] <= IMBALANCE * sizes[smallest]:
        return None
    return (f"ingest: classes are imbalanced: {largest!r} has {sizes[largest]} images, "
            f"{smallest!r} {sizes[smallest]} ({sizes[largest] / sizes[smallest]:.0f}x); "
            "answering the largest class scores high accuracy, so read macro-F1 and the "
            "majority-class line in reports/compare.md")  # fmt: skip


def report_lines(report: dict, data_root: str) -> tuple[list[str], str]:
    """What the ingest stage prints of :func:`summary`'s ``report``: warnings (one line per
    skipped file, then duplicates, high-bit-depth mapping and a class imbalance over
    :data:`IMBALANCE` when there were any) and the closing summary line. Paths are shown
    under ``data_root``."""
    warnings = [f"skipped {data_root}/{item['path']}: {item['reason']}"
                for item in report["skipped"]["files"]]  # fmt: skip
    dup = report["duplicates"]
    if dup["groups"]:
        warnings.append(
            f"ingest: found {dup['groups']} group(s) of identical images ({dup['images']} "
            f"copies beyond the first, {dup['cross_class_groups']} group(s) across class "
            "folders); each group kept in one split"
        )
    high = report.get("high_bit_depth")
    if high:
        how = "data.bit_depth" if high["bit_depth_param"] != "auto" else "the largest value"
        warnings.append(
            f"ingest: {high['images']} image(s) of 16-bit (or 32-bit integer) grayscale, values "
            f"up to {high['max_value']}: mapped as {high['bit_depth']}-bit data "
            f"(0..{2 ** high['bit_depth'] - 1} -> 0..255, from {how}; data.bit_depth: "
            f"{high['bit_depth_param']})"
        )
    for kind, items in sorted(report.get("flagged", {}).items()):
        shown = ", ".join(f"{data_root}/{item['path']}" for item in items[:3])
        more = f" and {len(items) - 3} more" if len(items) > 3 else ""
        warnings.append(f"ingest: kept {len(items)} {kind} picture(s) ({items[0]['note']}; "
                        f"{shown}{more}); listed in ingest.json")  # fmt: skip
    imbalance = imbalance_warning(report["per_class"])
    if imbalance:
        warnings.append(imbalance)
    ignored = ", ".join(f"{n} {kind}" for kind, n in report["ignored"].items() if n)
    flagged = ", ".join(f"{len(items)} {kind}" for kind, items in
                        sorted(report.get("flagged", {}).items()))  # fmt: skip
    line = (
        f"ingest: {report['images']} images, {report['classes']} classes, split {report['split']}; "
        f"skipped {report['skipped']['count']} unreadable; ignored {ignored or 'none'}"
        + (f"; kept but listed: {flagged}" if flagged else "")
    )
    return warnings, line
