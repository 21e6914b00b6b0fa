"""What a folder of class folders holds: its classes and candidate image files, found
before any decoding.

Layout read::

    root/<class name>/**/<image>.<jpg|jpeg|png|bmp|gif|webp|tif|tiff>

Hidden files and files with other extensions are ignored and counted. A symlinked
folder (a class folder or one inside it) is not followed, as DVC does not follow it when
it versions ``data/``: it is ignored and counted too, so what ingest reads is what
``data.dvc`` versions. A name that is not valid UTF-8 stops the scan with one line
naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from initbench.core.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass
class Scan:
    """What a folder holds: candidate image files (sorted), class names and what was ignored."""

    root: Path
    classes: list[str]
    files: list[tuple[str, int]]  # (path relative to root, class index)
    ignored: dict[str, list[str]] = field(default_factory=dict)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _check_utf8(root: Path, rel: str) -> None:
    """Raise if ``rel`` (a path under ``root``) is not valid UTF-8: its bytes could not be
    written to the manifest or metrics, and DVC cannot track such a file either.

    Raises:
        DataError: naming the file, its bytes shown as ``\\xNN`` escapes.
    """
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(rel).decode("utf-8", errors="backslashreplace")
        raise DataError(
            f"{root}/{shown}: the name is not valid UTF-8 (copied from an old share or zip?); "
            "rename it, DVC cannot track it either"
        ) from None


def scan_folder(root: str | os.PathLike[str]) -> Scan:
    """List class folders and their image files, in a stable order.

    Raises:
        DataError: if ``root`` is missing, has no image files or fewer than 2 class folders,
            or a name under it is not valid UTF-8 (found before any decoding).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}/: not found; put class folders of images there (see README)")
    ignored: dict[str, list[str]] = {"hidden": [], "non_image": [], "outside_class_folder": [],
                                     "symlinked_folder": []}  # fmt: skip
    class_dirs = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        _check_utf8(root, entry.name)
        if _is_hidden(entry.name):
            ignored["hidden"].append(entry.name)
        elif entry.is_symlink() and entry.is_dir():
            ignored["symlinked_folder"].append(entry.name)
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            ignored["outside_class_folder"].append(entry.name)
    classes = [d.name for d in class_dirs]
    files: list[tuple[str, int]] = []
    for label, class_dir in enumerate(class_dirs):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            rel_dir = Path(dirpath).relative_to(root)
            for name in [*dirnames, *filenames]:
                _check_utf8(root, (rel_dir / name).as_posix())
            for name in [d for d in dirnames if _is_hidden(d)]:
                ignored["hidden"].append((rel_dir / name).as_posix())
            dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
            for name in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                ignored["symlinked_folder"].append((rel_dir / name).as_posix())
                dirnames.remove(name)
            for name in sorted(filenames):
                rel = (rel_dir / name).as_posix()
                if _is_hidden(name):
                    ignored["hidden"].append(rel)
                elif Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    files.append((rel, label))
                else:
                    ignored["non_image"].append(rel)
    files.sort()
    ignored = {kind: sorted(paths) for kind, paths in ignored.items()}
    if not files:
        raise DataError(
            f"{root}/: no images found; expected {root}/<class name>/<image> with extensions "
            + ", ".join(sorted(IMAGE_EXTENSIONS))
        )
    if len(classes) < 2:
        raise DataError(
            f"{root}/: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "need at least 2 to classify"
        )
    return Scan(root=root, classes=classes, files=files, ignored=ignored)
