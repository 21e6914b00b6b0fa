"""dvc.yaml's stage commands, expanded for params.yaml, in an order that runs the pipeline.

    python benchmarks/stage_commands.py                 # the project in the current folder
    python benchmarks/stage_commands.py --project /tmp/copy

Prints one line a stage variant: its name as DVC names it (``ingest``, ``init_random@0``,
``compare_run@random-0-0``), a tab, its command, with the leading ``python``
replaced by the interpreter running this script. ``benchmarks/gpu_check.sh`` runs these
lines on a machine that may have no DVC, so the commands come from dvc.yaml and are never
copied by hand.

Expands what DVC's templating does in this project's dvc.yaml: ``${dotted.key}`` from
params.yaml (a value that is the whole string keeps its type, as a ``foreach`` list),
``foreach`` over a list (``${item}``) and ``matrix`` (``${item.<axis>}``). A stage comes
after every stage whose outputs (``outs``, ``metrics``, ``plots``) one of its ``deps`` is,
holds or lies in; otherwise dvc.yaml's order is kept.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"\$\{\s*([\w.-]+)\s*\}")
_PYTHON = re.compile(r"^python(?=\s)")


def _lookup(context: dict[str, Any], key: str) -> Any:
    value: Any = context
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"${{{key}}}: no such key in params.yaml (or the stage's item)")
        value = value[part]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"cannot put {value!r} into a string: only numbers, strings and bools")


def resolve(value: Any, context: dict[str, Any]) -> Any:
    """``value`` (a string, or lists and mappings of them) with every ``${key}`` replaced."""
    if isinstance(value, dict):
        return {resolve(k, context): resolve(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, context) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        return _lookup(context, whole.group(1))
    return _REFERENCE.sub(lambda match: _text(_lookup(context, match.group(1))), value)


def variants(
    name: str, stage: dict[str, Any], params: dict[str, Any]
) -> Iterator[tuple[str, dict]]:
    """``(variant name, resolved stage)`` for each variant of one dvc.yaml stage.

    Raises:
        ValueError: ``foreach`` is not a list (a mapping is not handled), or a reference
            names no key.
    """
    if "foreach" in stage:
        items = resolve(stage["foreach"], params)
        if not isinstance(items, list):
            raise ValueError(f"stage {name}: foreach must be a list here, got {items!r}")
        for item in items:
            yield f"{name}@{item}", resolve(stage["do"], params | {"item": item})
    elif "matrix" in stage:
        axes = {axis: resolve(values, params) for axis, values in stage["matrix"].items()}
        body = {key: value for key, value in stage.items() if key != "matrix"}
        for combination in itertools.product(*axes.values()):
            item = dict(zip(axes, combination, strict=True))
            label = "-".join(_text(v) for v in combination)
            yield f"{name}@{label}", resolve(body, params | {"item": item})
    else:
        yield name, resolve(stage, params)


def _paths(entries: list[Any] | None) -> list[Path]:
    """Paths of ``deps``/``outs``/``metrics``/``plots`` entries (a string or ``{path: options}``)."""
    return [Path(next(iter(e)) if isinstance(e, dict) else e) for e in entries or []]


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def ordered(stages: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """``stages`` so that each comes after the stages that write what it depends on; among
    the stages that can run, the first in dvc.yaml's order goes first.

    Raises:
        ValueError: the dependencies form a cycle.
    """
    outputs = {name: _paths([*stage.get("outs", []), *stage.get("metrics", []),
                             *stage.get("plots", [])]) for name, stage in stages}  # fmt: skip
    needs = {
        name: {other for other, written in outputs.items() if other != name
               and any(_overlaps(d, o) for d in _paths(stage.get("deps")) for o in written)}
        for name, stage in stages
    }  # fmt: skip
    done: list[tuple[str, dict]] = []
    left = list(stages)
    while left:
        ready = next((s for s in left if needs[s[0]] <= {n for n, _ in done}), None)
        if ready is None:
            raise ValueError(f"dvc.yaml: the deps of {', '.join(n for n, _ in left)} form a cycle")
        done.append(ready)
        left.remove(ready)
    return done


def stage_commands(project: Path) -> list[tuple[str, str]]:
    """``(variant name, shell command)`` of every stage of ``project/dvc.yaml``, in run order.

    Raises:
        ValueError: dvc.yaml uses what is not handled here (``vars``, ``wdir``, a ``foreach``
            mapping, a list of commands), or a reference names no key of
            ``project/params.yaml``.
    """
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    if "vars" in pipeline:
        raise ValueError("dvc.yaml: vars is not handled; only params.yaml is read")
    stages = []
    for name, stage in pipeline["stages"].items():
        for variant, resolved in variants(name, stage, params):
            if "wdir" in resolved:
                raise ValueError(f"stage {variant}: wdir is not handled")
            stages.append((variant, resolved))
    python = shlex.quote(sys.executable)
    commands = []
    for name, stage in ordered(stages):
        if not isinstance(stage.get("cmd"), str):
            raise ValueError(f"stage {name}: cmd must be one command (a string)")
        commands.append((name, _PYTHON.sub(lambda _: python, stage["cmd"].strip())))
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path(), help="folder with dvc.yaml")
    args = parser.parse_args()
    for name, command in stage_commands(args.project):
        print(f"{name}\t{command}")


if __name__ == "__main__":
    main()
