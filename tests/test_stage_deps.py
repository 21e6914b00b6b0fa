"""Each dvc.yaml stage lists, as deps, every file of code it runs.

A stage module ``stages/<name>.py`` runs its own code and every ``initbench``
module it imports, directly or through other modules, at module level or inside
functions. If one of those files is missing from the stage's ``deps``, editing it
leaves ``dvc repro`` serving stale outputs. The import graph is read with ``ast``,
so nothing is imported here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: Packages whose modules count as code a stage runs.
PACKAGES = ("initbench", "stages")
#: Run by every stage, but .dvcignore keeps it out of its room's hash: it records the
#: stage's wall time beside the outputs (reports/timing.md) and changes none of them.
IGNORED = ("initbench/core/timing.py",)
#: Run by every stage but never a dep: package markers with a docstring, ``__version__``
#: and (initbench) the import time that stages' wall-time lines count from; dvc.yaml
#: lists neither (a room's own empty __init__.py is in its folder dep).
NOT_DEPS = frozenset({"initbench/__init__.py", "stages/__init__.py", *IGNORED})
STAGE_MODULE = re.compile(r"python\S*\s+-m\s+(stages\.\w+)")


def module_file(root: Path, module: str) -> str | None:
    """``pkg/mod.py`` or ``pkg/mod/__init__.py`` relative to ``root``, or None if neither exists."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    for rel in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
        if (root / rel).is_file():
            return rel
    return None


def _package_of(rel: str) -> str:
    """The package a relative import in file ``rel`` starts from."""
    parts = rel.removesuffix(".py").split("/")
    return ".".join(parts[:-1])


def imported_modules(root: Path, rel: str) -> set[str]:
    """Names of modules file ``rel`` may import: ``import a.b``, ``from a import b``,
    ``from a.b import c`` and relative forms, anywhere in the file (functions too).

    A ``from a import b`` yields both ``a`` and ``a.b``; :func:`module_file` drops
    names that are not files (``b`` was an attribute).
    """
    tree = ast.parse((root / rel).read_text(encoding="utf-8"), filename=rel)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(rel).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    expanded = set(names)
    for name in names:  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        parts = name.split(".")
        expanded.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return expanded


def code_closure(root: Path, module: str) -> set[str]:
    """Files (relative to ``root``) of ``module`` and every project module it imports, transitively.

    Raises:
        FileNotFoundError: if ``module`` has no file under ``root``.
    """
    start = module_file(root, module)
    if start is None:
        raise FileNotFoundError(f"{module}: no file under {root}")
    parts = module.split(".")
    parents = [module_file(root, ".".join(parts[:i])) for i in range(1, len(parts))]
    seen, todo = set(), [start, *(p for p in parents if p is not None)]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        for name in imported_modules(root, rel):
            found = module_file(root, name)
            if found is not None and found not in seen:
                todo.append(found)
    return seen


def stage_bodies(dvc_yaml: dict) -> dict[str, dict]:
    """Stage name -> the dict holding its ``cmd`` and ``deps``: a ``foreach`` stage's ``do``
    dict, a ``matrix`` or plain stage's own dict."""
    bodies = {}
    for name, stage in (dvc_yaml.get("stages") or {}).items():
        bodies[name] = stage["do"] if "foreach" in stage else stage
    return bodies


def stage_modules(body: dict) -> list[str]:
    """The ``stages.<name>`` modules a stage's ``cmd`` (a string or a list) runs."""
    cmd = body.get("cmd", "")
    text = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    return STAGE_MODULE.findall(text)


def missing_deps(root: Path, body: dict) -> list[str]:
    """Code files a stage runs that its ``deps`` do not cover (a listed folder covers its files).

    Deps with ``${...}`` interpolations are ignored: they name data, not code.
    """
    deps = [str(d).rstrip("/") for d in body.get("deps") or [] if "${" not in str(d)]
    needed = set()
    for module in stage_modules(body):
        needed |= code_closure(root, module) - NOT_DEPS

    def covered(rel: str) -> bool:
        return any(rel == dep or rel.startswith(dep + "/") for dep in deps)

    return sorted(rel for rel in needed if not covered(rel))


# --------------------------------------------------------------------------- the real dvc.yaml


def _real_stages() -> dict[str, dict]:
    return stage_bodies(yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8")))


def test_dvc_yaml_runs_stage_modules_that_exist():
    bodies = _real_stages()
    runs = {name: stage_modules(body) for name, body in bodies.items()}
    assert any(runs.values()), "no stage in dvc.yaml runs `python -m stages.<name>`"
    for name, modules in runs.items():
        for module in modules:
            assert module_file(REPO, module), f"stage {name!r} runs {module}: no such file"


def test_every_stage_depends_on_the_code_it_runs():
    missing = {}
    for name, body in _real_stages().items():
        files = missing_deps(REPO, body)
        if files:
            missing[name] = files
    report = "\n".join(f"  {name}: {', '.join(files)}" for name, files in sorted(missing.items()))
    assert not missing, f"dvc.yaml stages miss deps on code they import:\n{report}"


# --------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


FAKE_PROJECT = {
    "initbench/__init__.py": '"""pkg."""\n',
    "initbench/a.py": "import os\n\ndef f():\n    from initbench import b\n    return b\n",
    "initbench/b.py": "import initbench.c as c\nfrom initbench.errors import Oops\n",
    "initbench/c.py": "from initbench.d import thing\n",
    "initbench/d.py": "from . import e\nfrom .sub.g import h\nthing = 1\n",
    "initbench/e.py": "x = 1\n",
    "initbench/errors.py": "class Oops(Exception): ...\n",
    "initbench/sub/__init__.py": "",
    "initbench/sub/g.py": "h = 2\n",
    "initbench/unused.py": "import initbench.a\n",
    "stages/__init__.py": "",
    "stages/s.py": "from initbench.a import f\nfrom stages.helper import g\n",
    "stages/helper.py": "import json\ng = json.dumps\n",
    "stages/t.py": "print('no project imports')\n",
}


def test_closure_follows_function_level_relative_and_from_package_imports(tmp_path):
    _write(tmp_path, FAKE_PROJECT)
    assert code_closure(tmp_path, "stages.s") == {
        "stages/__init__.py",
        "stages/s.py",
        "stages/helper.py",
        "initbench/__init__.py",
        "initbench/a.py",
        "initbench/b.py",
        "initbench/c.py",
        "initbench/d.py",
        "initbench/e.py",
        "initbench/errors.py",
        "initbench/sub/__init__.py",
        "initbench/sub/g.py",
    }
    assert code_closure(tmp_path, "stages.t") == {"stages/__init__.py", "stages/t.py"}


def test_missing_deps_per_stage_kind(tmp_path):
    _write(tmp_path, FAKE_PROJECT)
    dvc = yaml.safe_load(
        """
stages:
  plain:
    cmd: python -m stages.t --out x
    deps: [stages/t.py]
  looped:
    foreach: [1, 2]
    do:
      cmd: python -m stages.s --seed ${item}
      deps:
        - data/${item}
        - stages/s.py
        - stages/helper.py
        - initbench/a.py
        - initbench/b.py
        - initbench/c.py
        - initbench/d.py
        - initbench/errors.py
  grid:
    matrix:
      seed: [1, 2]
    cmd:
      - echo start
      - python -m stages.s --seed ${item.seed}
    deps: [stages, initbench/]
  forgetful:
    cmd: python -m stages.s
    deps: [stages/s.py, initbench/a.py]
"""
    )
    bodies = stage_bodies(dvc)
    assert stage_modules(bodies["grid"]) == ["stages.s"]
    assert missing_deps(tmp_path, bodies["plain"]) == []
    assert missing_deps(tmp_path, bodies["looped"]) == [
        "initbench/e.py",
        "initbench/sub/__init__.py",
        "initbench/sub/g.py",
    ]
    assert missing_deps(tmp_path, bodies["grid"]) == []
    assert missing_deps(tmp_path, bodies["forgetful"]) == [
        "initbench/b.py",
        "initbench/c.py",
        "initbench/d.py",
        "initbench/e.py",
        "initbench/errors.py",
        "initbench/sub/__init__.py",
        "initbench/sub/g.py",
        "stages/helper.py",
    ]


# --------------------------------------------------------------------------- library rooms

#: A stage depends on the library by room: each subpackage as a folder, params.py as a file.
LIBRARY = "initbench"


def library_rooms(files: set[str]) -> set[str]:
    """The library deps that cover ``files``: ``initbench/<room>`` for a file in a
    subpackage, the file itself for a module at the top (``initbench/params.py``)."""
    rooms = set()
    for rel in files:
        parts = rel.split("/")
        if parts[0] == LIBRARY and rel not in NOT_DEPS:
            rooms.add("/".join(parts[:2]))
    return rooms


def test_every_stage_lists_exactly_the_library_rooms_it_imports():
    """No room missing (stale outputs) and none extra (needless re-runs): an edit under
    ``initbench/views`` must not re-run a training stage."""
    wrong = {}
    for name, body in _real_stages().items():
        listed = {str(d).rstrip("/") for d in body.get("deps") or [] if str(d).startswith(LIBRARY)}
        needed = set()
        for module in stage_modules(body):
            needed |= library_rooms(code_closure(REPO, module))
        if listed != needed:
            wrong[name] = f"lists {sorted(listed)}, imports {sorted(needed)}"
    report = "\n".join(f"  {name}: {text}" for name, text in sorted(wrong.items()))
    assert not wrong, f"dvc.yaml stages whose library deps differ from their imports:\n{report}"


def test_library_rooms_of_a_closure():
    files = {"initbench/__init__.py", "initbench/params.py", "initbench/data/scan.py",
             "initbench/data/decode.py", "initbench/core/cli.py", "stages/s.py"}  # fmt: skip
    assert library_rooms(files) == {"initbench/params.py", "initbench/data", "initbench/core"}


def test_no_training_stage_depends_on_the_views():
    training = {"autoencoder", "simclr", "finetune", "compare_run"}
    for name, body in _real_stages().items():
        if name in training:
            assert "initbench/views" not in {str(d) for d in body.get("deps") or []}, name


def test_what_no_stage_depends_on_is_in_dvcignore():
    """Else DVC hashes it with its room and an edit to it re-runs every stage
    (tests/test_pipeline_e2e.py checks that one re-runs none)."""
    ignored = (REPO / ".dvcignore").read_text(encoding="utf-8").splitlines()
    assert [rel for rel in IGNORED if f"/{rel}" not in ignored] == []
