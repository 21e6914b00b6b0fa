"""Wall time per stage, method and seed: ``reports/timing.md``, kept out of every output.

A stage's wall time depends on the machine, its load and its thread count, so it cannot be
part of an output without breaking "same inputs give the same outputs" (``dvc.lock`` and
``reports/compare.md`` would differ on every run). Instead, each stage run by DVC records
its own wall time as it finishes (:func:`record_stage`, called by
:func:`initbench.core.cli.run`) in ``artifacts/timing/<stage>.json``, which no stage reads
or declares, and re-renders ``reports/timing.md`` from those records
(:func:`render_timing`): pretraining per method and seed, the comparison's runs per init
and seed, and every other stage. Stages DVC restores from its cache do not run, so their
rows keep the time of the run that made the restored outputs. The compute that does not
depend on the machine (optimizer steps, images seen) is in the report's settings.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from initbench.core.files import write_json, write_text
from initbench.core.yaml12 import read_yaml

#: Where the records are kept, under the DVC project's root.
RECORDS = Path("artifacts") / "timing"
#: The rendered page, under the DVC project's root.
PAGE = Path("reports") / "timing.md"
#: Pretraining stages per seed: the method each measures, in the report's order.
PRETRAINING = {"init_random": "random", "patches": "kmeans", "kmeans": "kmeans",
               "autoencoder": "autoencoder", "simclr": "simclr"}  # fmt: skip
#: The per-seed report of a pretraining method that holds its ``steps`` and ``images_seen``.
METHOD_REPORTS = {"autoencoder": "artifacts/init/autoencoder/seed{seed}.json",
                  "simclr": "artifacts/init/simclr/seed{seed}.json"}  # fmt: skip


def _cpu() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``) and core count, e.g.
    ``Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz, 2 cores``."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return ", ".join(filter(None, [model, f"{os.cpu_count() or 1} cores"]))


def record_stage(seconds: float, environ: Mapping[str, str] | None = None) -> Path | None:
    """Record a finished stage's wall time and re-render ``reports/timing.md``; return the
    record's path. Only for a stage run by DVC (``DVC_STAGE`` and ``DVC_ROOT`` set) and
    not in a process torchrun started (the process that launched torchrun records the
    whole). A file error is swallowed (``None``): timing never fails a stage.

    Args:
        seconds: the stage's wall time, from the library's import to the end of its work.
    """
    environ = os.environ if environ is None else environ
    stage, root = environ.get("DVC_STAGE"), environ.get("DVC_ROOT")
    if not stage or not root or "TORCHELASTIC_RUN_ID" in environ:
        return None
    path = Path(root) / RECORDS / f"{stage}.json"
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        write_json(path, {"stage": stage, "seconds": round(seconds, 1), "finished": finished,
                          "machine": _cpu()})  # fmt: skip
        render_timing(root)
    except (OSError, ValueError):
        return None
    return path


def read_records(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every record under ``root``'s ``artifacts/timing``, by stage name; unreadable ones
    are left out (a record is a courtesy, not an output)."""
    records = {}
    for path in sorted((Path(root) / RECORDS).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            records[str(record["stage"])] = record | {"seconds": float(record["seconds"])}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _seen_per_second(root: Path, method: str, seconds: dict[int, float]) -> str:
    """Images (SimCLR: pairs of views) seen a second over the seeds in ``seconds`` (seed
    to stage time), from each seed's report; empty when a report is missing or has no
    ``images_seen``."""
    images = 0
    for seed in seconds:
        try:
            report = json.loads((root / METHOD_REPORTS[method].format(seed=seed)).read_text())
            images += int(report["images_seen"])
        except (KeyError, OSError, ValueError, TypeError):
            return ""
    total = sum(seconds.values())
    unit = "pairs of views" if method == "simclr" else "images"
    return f"{images / total:,.0f} {unit}" if total > 0 else ""


def _current(stage: str, seeds: Sequence[int], finetune_seeds: Sequence[int]) -> bool:
    """Whether ``stage`` (``name``, ``name@S`` or ``name@S-F``, seed and fine-tune seed)
    is one params.yaml still runs: an item of numbers names a seed and a fine-tune seed."""
    _, _, item = stage.partition("@")
    parts = item.split("-")
    if not item or not all(part.isdigit() for part in parts):
        return True
    return int(parts[0]) in seeds and (len(parts) < 2 or int(parts[1]) in finetune_seeds)


def timing_page(
    records: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    inits: Sequence[str],
    finetune_seeds: Sequence[int],
    root: str | os.PathLike[str] = ".",
) -> str:
    """``reports/timing.md``'s text: tables of wall time (seconds) per pretraining method
    and seed, per comparison run (init x seed x fine-tune seed), and of every other stage.
    Records of seeds, fine-tune seeds or inits that params.yaml no longer names are left
    out (``name@S`` and ``name@S-F`` stages of another seed too).

    Args:
        records: :func:`read_records`' result, stage name to record.
        seeds, inits, finetune_seeds: params.yaml's ``compare.*``.
        root: the DVC project's root, for the pretraining reports' images seen.
    """
    root = Path(root)
    used: set[str] = set()
    lines = [
        "# Wall time of the pipeline's last run",
        "",
        "Each stage run by DVC records its own wall time (seconds, from loading the library "
        "to its last output) in `artifacts/timing/` and re-renders this page. It depends on "
        "the machine and its load, so it is kept out of the outputs: the compute that does "
        "not (optimizer steps, images seen) is in `reports/compare.md`'s settings. A stage "
        "DVC restored from its cache keeps the time of the run that made its outputs.",
        "",
    ]
    head = "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | all seeds | seen a second |"
    table = [head, "|---" * (len(seeds) + 3) + "|"]
    for method in dict.fromkeys(PRETRAINING.values()):
        stages = [name for name, m in PRETRAINING.items() if m == method]
        timed: dict[int, float] = {}
        for seed in seeds:
            names = [f"{stage}@{seed}" for stage in stages if f"{stage}@{seed}" in records]
            used.update(names)
            if names:
                timed[seed] = sum(records[n]["seconds"] for n in names)
        if not timed:
            continue
        rate = _seen_per_second(root, method, timed) if method in METHOD_REPORTS else ""
        table.append(f"| {method} ({' + '.join(stages)}) | "
                     + " | ".join(_seconds(timed.get(seed)) for seed in seeds)
                     + f" | {_seconds(sum(timed.values()))} | {rate} |")  # fmt: skip
    if len(table) > 2:
        lines += ["## Pretraining, per method and seed (s)", "", *table, ""]
    labels = [(s, f) for s in seeds for f in finetune_seeds]
    show = "seed {}" if len(finetune_seeds) == 1 else "seed {}, ft {}"
    head = "| init | " + " | ".join(show.format(s, f) for s, f in labels) + " | all |"
    table = [head, "|---" * (len(labels) + 2) + "|"]
    for init in inits:
        names = [f"compare_run@{init}-{s}-{f}" for s, f in labels]
        if not any(n in records for n in names):
            continue
        used.update(n for n in names if n in records)
        values = [records[n]["seconds"] if n in records else None for n in names]
        table.append(f"| {init} | " + " | ".join(_seconds(v) for v in values)
                     + f" | {_seconds(sum(v or 0.0 for v in values))} |")  # fmt: skip
    if len(table) > 2:
        lines += ["## The comparison's runs, per init and seed (s)", "",
                  "Each is one checkpoint's fine-tunes at every label fraction, then its "
                  "linear probes (stage `compare_run`).", "", *table, ""]  # fmt: skip
    base = set(PRETRAINING) | {"compare_run"}
    others = {n: r for n, r in records.items()
              if n.split("@")[0] not in base and _current(n, seeds, finetune_seeds)}  # fmt: skip
    if others:
        lines += ["## Other stages (s)", "", "| stage | wall time, s | finished (UTC) |",
                  "|---|---|---|"]  # fmt: skip
        for name, record in sorted(others.items(), key=lambda item: item[1].get("finished", "")):
            lines.append(f"| {name} | {_seconds(record['seconds'])} | {record.get('finished', '')} |")  # fmt: skip
        used.update(others)
    shown = [records[n] for n in used]
    if shown:
        finished = sorted(str(r.get("finished", "")) for r in shown)
        newest = max(shown, key=lambda r: str(r.get("finished", "")))
        total = sum(r["seconds"] for r in shown)
        lines += ["", f"**All stages shown: {total:,.0f} s ({total / 60:.1f} min)**, finished "
                  f"between {finished[0]} and {finished[-1]} (UTC), the newest on "
                  f"{newest.get('machine') or 'an unknown machine'}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_timing(root: str | os.PathLike[str]) -> Path:
    """Write ``root``'s ``reports/timing.md`` (atomically) from its records of the stages
    its dvc.yaml names and its params.yaml's ``compare`` lists; return the page's path.

    Raises:
        OSError: the page cannot be written.
    """
    root = Path(root)
    try:  # the stages dvc.yaml names now: a removed or renamed stage's record is left out
        stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
        templated = {name for name, body in stages.items() if {"foreach", "matrix"} & set(body)}
        known = {name: name in templated for name in stages}
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        known = None
    try:
        compare = read_yaml((root / "params.yaml").read_text()).get("compare") or {}
        seeds, inits = list(compare.get("seeds") or []), list(compare.get("inits") or [])
        finetune_seeds = list(compare.get("finetune_seeds") or [0])
    except (OSError, AttributeError, TypeError, yaml.YAMLError):  # the stage checked params
        seeds, inits, finetune_seeds = [], [], [0]
    records = read_records(root)
    if known is not None:  # ``name@item`` for a foreach or matrix stage, ``name`` else
        records = {n: r for n, r in records.items()
                   if known.get(n.partition("@")[0]) == bool(n.partition("@")[2])}  # fmt: skip
    page = timing_page(records, seeds, inits, finetune_seeds, root)
    write_text(root / PAGE, page)
    return root / PAGE
