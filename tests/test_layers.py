"""The library's rooms import only downward, read with ``ast`` (nothing is imported here).

The floor (``initbench/core``: errors, files, cli, yaml12) imports nothing of initbench but
itself; ``data``, ``models`` and ``views`` only the floor; ``training`` the floor, data and
models; ``inits`` those and training; ``comparison`` those but inits, plus ``params``:
fine-tuning only loads checkpoint files, never knows how they were made. ``training`` and
``inits`` never read ``params`` (they take explicit arguments); ``params`` stays torch-free
so the check_params stage takes about a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOOR = "core"
#: room -> the rooms (besides itself and the floor) it may import
ALLOWED: dict[str, frozenset[str]] = {
    FLOOR: frozenset(),
    "data": frozenset(),
    "models": frozenset(),
    "views": frozenset(),
    "training": frozenset({"data", "models"}),
    "inits": frozenset({"data", "models", "training"}),
    "comparison": frozenset({"data", "models", "training", "params"}),
    "params": frozenset({"data", "models"}),
}
#: Imported from the package root: the stages' start time (initbench/__init__.py).
ROOT_NAMES = frozenset({"STARTED", "__version__"})


def room_of(module: str) -> str | None:
    """``initbench.data.scan`` -> ``data``, ``initbench.params`` -> ``params``; None outside."""
    parts = module.split(".")
    if parts[0] != "initbench" or len(parts) < 2:
        return None
    return parts[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every initbench import in ``path``, in functions too.
    ``from initbench.x import y`` counts as ``initbench.x.y`` (y may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if node.module == "initbench" and alias.name in ROOT_NAMES:
                    continue  # the package root holds only the start time
                found.append((node.lineno, f"{node.module}.{alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "<relative import>"))
    return [(line, m) for line, m in found if m == "<relative import>" or m.startswith("initbench")]


def violations(root: Path) -> list[str]:
    """``file:line imports module (room X may import only ...)`` for every import that breaks
    the rule, relative imports included (they hide the room they reach)."""
    library = root / "initbench"
    out = []
    for path in sorted(library.rglob("*.py")):
        rel = path.relative_to(library)
        room = (
            rel.parts[0].removesuffix(".py")
            if len(rel.parts) > 1 or rel.name == "params.py"
            else None
        )
        if room is None:  # initbench/__init__.py, checked below
            continue
        allowed = ALLOWED.get(room)
        if allowed is None:
            out.append(
                f"{path.relative_to(root)}: room {room!r} has no rule in tests/test_layers.py"
            )
            continue
        for line, module in imports_of(path):
            target = None if module == "<relative import>" else room_of(module)
            ok = target is not None and (target in (room, FLOOR) or target in allowed)
            if room == FLOOR:
                ok = target == FLOOR
            if not ok:
                may = ", ".join(sorted({FLOOR, room} | allowed))
                out.append(f"{path.relative_to(root)}:{line} imports {module} "
                           f"(initbench/{room} may import only {may})")  # fmt: skip
    return out


def test_every_import_goes_down_the_layers():
    found = violations(REPO)
    assert not found, "imports that break the layer rule:\n  " + "\n  ".join(found)


def test_rooms_are_packages_with_empty_markers():
    rooms = {
        p.name for p in (REPO / "initbench").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert rooms == set(ALLOWED) - {"params"}
    for room in rooms:
        marker = REPO / "initbench" / room / "__init__.py"
        assert marker.is_file() and marker.read_text() == "", f"{marker}: must exist and be empty"


def test_the_package_root_holds_only_the_start_time():
    tree = ast.parse((REPO / "initbench" / "__init__.py").read_text())
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
    imports = {a.name for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    assert names <= ROOT_NAMES and imports <= {"time"}
    assert not any(isinstance(node, ast.ImportFrom) for node in tree.body)


def _torch_at_module_level(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])  # fmt: skip
        if any(n == "torch" or n.startswith("torch.") for n in names):
            return True
    return False


def test_params_and_what_it_imports_load_no_torch():
    """check_params runs in about a second because nothing it imports loads torch."""
    todo, seen = [REPO / "initbench" / "params.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        assert not _torch_at_module_level(path), f"{path.relative_to(REPO)} imports torch"
        for _, module in imports_of(path):
            parts = module.split(".")
            for end in range(len(parts), 1, -1):
                candidate = REPO.joinpath(*parts[:end]).with_suffix(".py")
                if candidate.is_file():
                    todo.append(candidate)
                    break
    assert len(seen) > 1  # params imports the floor at least


# --------------------------------------------------------------------------- the rule itself


@pytest.mark.parametrize(
    ("room", "source", "broken"),
    [
        ("core/files.py", "from initbench.data.dataset import Split\n", True),
        ("data/scan.py", "from initbench.core.errors import DataError\n", False),
        ("data/scan.py", "import initbench.training.loop\n", True),
        ("views/pictures.py", "def f():\n    from initbench.models.cnn import Encoder\n", True),
        ("training/loop.py", "from initbench.params import Params\n", True),
        ("inits/simclr.py", "from initbench.training.loop import optimize\n", False),
        ("comparison/protocols.py", "from initbench.inits.simclr import build_simclr\n", True),
        ("comparison/protocols.py", "from initbench.params import Params\n", False),
        ("models/cnn.py", "from . import sizes\n", True),
        ("params.py", "from initbench.training.setup import set_seed\n", True),
    ],
)
def test_violations_name_the_file_and_the_import(tmp_path, room, source, broken):
    path = tmp_path / "initbench" / room
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = violations(tmp_path)
    assert bool(found) == broken, found
    if broken:
        assert found[0].startswith(f"initbench/{room}:") and "imports" in found[0]
