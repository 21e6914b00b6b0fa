"""What a folder of class folders holds: its classes and candidate image files, found
before any decoding.

Layout read::

    root/<class name>/**/<image>.<any extension of a format the pinned Pillow decodes>

(:data:`IMAGE_EXTENSIONS`: JPEG, PNG, GIF, BMP, TIFF, WebP, AVIF, the Netpbm family and
more.) Hidden files and files with other extensions are ignored and counted. A symlinked
folder (a class folder or one inside it) is not followed, as DVC does not follow it when
it versions ``data/``: it is ignored and counted too, so what ingest reads is what
``data.dvc`` versions. A name that is not valid UTF-8 stops the scan with one line
naming it.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from initbench.core.errors import DataError

#: Top folder names that mark a split layout (with the same class folders under each).
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation",
                         "dev", "eval", "evaluation"})  # fmt: skip
#: Pillow formats not read: they need an outside program (EPS: Ghostscript) or hold video.
_NOT_READ = frozenset({"EPS", "MPEG"})


def _pillow_extensions() -> frozenset[str]:
    """Extensions of every raster format the pinned Pillow decodes by itself: its
    registered openers, less stubs (formats it identifies but cannot decode without a
    plugin: BUFR, GRIB, HDF5, WMF) and :data:`_NOT_READ`. AVIF and WebP are among them
    when Pillow was built with them, as the pinned wheels are."""
    from PIL import Image, ImageFile

    Image.init()
    readable = set()
    for extension, name in Image.registered_extensions().items():
        factory = Image.OPEN.get(name, (None, None))[0]
        stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
        if factory is not None and not stub and name not in _NOT_READ:
            readable.add(extension.lower())
    return frozenset(readable)


#: Image file extensions read (lower case): see :func:`_pillow_extensions`.
IMAGE_EXTENSIONS = _pillow_extensions()


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


def _other_files(paths: list[str]) -> str:
    """``"; it holds 8 .HEIC file(s), not a format the pinned Pillow reads: convert them
    (to JPEG or PNG)"`` for the non-image files ``paths``, most common extension first;
    empty without any."""
    counts: dict[str, int] = {}
    for path in paths:
        suffix = Path(path).suffix or "(no extension)"
        counts[suffix] = counts.get(suffix, 0) + 1
    if not counts:
        return ""
    listed = ", ".join(f"{n} {ext} file(s)" for ext, n in
                       sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3])  # fmt: skip
    return (
        f"; it holds {listed}, not a format the pinned Pillow reads: convert them (to JPEG or PNG)"
    )


def class_files_note(scan: Scan, class_name: str) -> str:
    """:func:`_other_files` for the non-image files of one class folder."""
    return _other_files([p for p in scan.ignored.get("non_image", [])
                         if p.split("/", 1)[0] == class_name])  # fmt: skip


def _subfolders(folder: Path) -> list[str]:
    """The visible, real (not symlinked) folders directly in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.is_symlink() and not _is_hidden(p.name))  # fmt: skip


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def class_key(name: str) -> str:
    """A class folder's name as macOS and Windows compare it: Unicode NFC, case folded."""
    return unicodedata.normalize("NFC", name).casefold()


def _check_layout(root: Path, class_dirs: list[Path]) -> None:
    """Stop on a folder that would mean something else than its class folders say.

    Raises:
        DataError: two class folders whose names differ only in case or Unicode form
            (one folder on macOS and Windows, two here), naming both; or a split layout
            (``train/<class>/``, ``test/<class>/``): a top folder named as a split
            (:data:`SPLIT_NAMES`), no image directly in any top folder, and the same
            subfolder names under all of them.
    """
    seen: dict[str, str] = {}
    for folder in class_dirs:
        other = seen.setdefault(class_key(folder.name), folder.name)
        if other != folder.name:
            same_look = unicodedata.normalize("NFC", other) == unicodedata.normalize(
                "NFC", folder.name)  # fmt: skip
            written = f" (written {other!a} and {folder.name!a})" if same_look else ""
            raise DataError(
                f"{root}/: class folders {other!r} and {folder.name!r}{written} differ only in "
                "case or Unicode form: one folder on macOS and Windows, two classes here; "
                "merge or rename one"
            )
    if not any(d.name.lower() in SPLIT_NAMES for d in class_dirs):
        return  # cat/{indoor,outdoor}/, dog/{indoor,outdoor}/ is a valid layout
    if len(class_dirs) < 2 or any(_holds_images(d) for d in class_dirs):
        return
    inner = {d.name: _subfolders(d) for d in class_dirs}
    shared = sorted(set.intersection(*(set(names) for names in inner.values())))
    if shared:
        tops = ", ".join(f"{name}/" for name in inner)
        train = next((name for name in inner if "train" in name.lower()), class_dirs[0].name)
        raise DataError(
            f"{root}/: looks like a split layout, not class folders: {tops} each hold the "
            f"folders {', '.join(shared)}. initbench draws its own split: point data at one "
            f"folder of class folders (say {root}/{train}), or merge the splits "
            "into one folder per class"
        )


def scan_folder(root: str | os.PathLike[str]) -> Scan:
    """List class folders and their image files, in a stable order.

    Raises:
        DataError: if ``root`` is missing, has no image files or fewer than 2 class folders,
            is laid out by split, has two class folders whose names collide on macOS and
            Windows (:func:`class_key`), or a name under it is not valid UTF-8 (found
            before any decoding).
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
    _check_layout(root, class_dirs)
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
            f"{root}/: no images found; expected {root}/<class name>/<image> in a format "
            f"Pillow reads{_other_files(ignored['non_image'])}"
        )
    if len(classes) < 2:
        inner = _subfolders(class_dirs[0]) if class_dirs else []
        hint = (f"; {root}/{classes[0]}/ holds the folders {', '.join(inner)}: if those are the "
                f"classes, use {root}/{classes[0]} as the data folder" if len(inner) >= 2 else "")  # fmt: skip
        raise DataError(
            f"{root}/: found {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            f"need at least 2 to classify{hint}"
        )
    return Scan(root=root, classes=classes, files=files, ignored=ignored)
