"""Wall time of every kind of stage of the default pipeline, at two commits, side by side.

    python benchmarks/pipeline.py --before <commit> [--after HEAD] [--rounds 2]

Each commit is checked out in a temporary git worktree that shares this repository's DVC
cache, so ``dvc checkout`` restores that commit's outputs without running anything. Then,
for each stage kind (one variant of each: ``autoencoder@0``, ``compare_run@random-0-0``
...), ``dvc repro --single-item --force <stage>`` is timed at the before commit, then at
the after commit, alternating, ``--rounds`` times for stages under a minute and once for
the longer ones. A stage's time includes DVC's start and its lock-file update (what a
``dvc repro`` pays per stage, plus DVC's start of about 1.5 s). The estimate of a full
``make repro`` is the sum over kinds of the median time times the number of variants of
that kind at that commit's params.yaml.

Writes ``reports/bench_pipeline.json``; ``benchmarks/bench.py`` renders it into
``reports/bench.md``. Takes about 20 minutes on 2 cores (the slow side's stages dominate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: Stages that take over a minute run once per side; the others ``--rounds`` times.
LONG = ("autoencoder", "simclr", "finetune")


def sh(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{result.stdout}{result.stderr}")
    return result


def stage_kinds(worktree: Path) -> list[tuple[str, str, int]]:
    """``(kind, one variant's name, number of variants)`` of the default pipeline at a commit."""
    params = yaml.safe_load((worktree / "params.yaml").read_text())
    stages = yaml.safe_load((worktree / "dvc.yaml").read_text())["stages"]
    seed = params["compare"]["seeds"][0]
    kinds = []
    for name, stage in stages.items():
        if "foreach" in stage:
            kinds.append((name, f"{name}@{seed}", len(params["compare"]["seeds"])))
        elif "matrix" in stage:  # axes like ${compare.inits}: their lists from params.yaml
            axes = {axis: _param_list(params, ref) for axis, ref in stage["matrix"].items()}
            fractions = axes.get("label_fraction", [None])
            count = math.prod(len(v) for axis, v in axes.items() if axis != "label_fraction")
            for fraction in fractions:  # a variant's cost depends on its fraction
                item = "-".join(str(fraction if axis == "label_fraction" else values[0])
                                for axis, values in axes.items())  # fmt: skip
                kind = name if fraction is None else f"{name} {fraction:g}"
                kinds.append((kind, f"{name}@{item}", count))
        else:
            kinds.append((name, name, 1))
    return kinds


def _param_list(params: dict, reference: str) -> list:
    """``"${compare.seeds}"`` -> that list of params.yaml."""
    value: object = params
    for key in reference.strip("${} ").split("."):
        value = value[key]  # type: ignore[index]
    return list(value)  # type: ignore[call-overload]


def worktree(commit: str, root: Path) -> Path:
    path = root / commit[:12]
    sh(REPO, "git", "worktree", "add", "--detach", str(path), commit)
    sh(path, "dvc", "cache", "dir", "--local", str(REPO / ".dvc" / "cache"))
    sh(path, "dvc", "checkout", "--force")  # every output of the commit's dvc.lock, from cache
    return path


def time_stage(path: Path, stage: str) -> float:
    start = time.perf_counter()
    result = sh(path, "dvc", "repro", "--single-item", "--force", stage)
    seconds = time.perf_counter() - start
    if f"Running stage '{stage}'" not in result.stdout:
        raise SystemExit(f"{stage} did not run in {path}:\n{result.stdout}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="commit before the change")
    parser.add_argument("--after", default="HEAD", help="commit after it (default HEAD)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each short stage")
    parser.add_argument("--out", default=str(REPO / "reports" / "bench_pipeline.json"))
    args = parser.parse_args()
    commits = {side: sh(REPO, "git", "rev-parse", rev).stdout.strip()
               for side, rev in (("before", args.before), ("after", args.after))}  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="initbench-pipeline-"))
    trees = {}
    try:
        trees = {side: worktree(commit, root) for side, commit in commits.items()}
        kinds = {side: stage_kinds(tree) for side, tree in trees.items()}
        rows = []
        names = list(dict.fromkeys(k for side in kinds.values() for k, _, _ in side))
        for kind in names:
            entry: dict[str, object] = {"kind": kind}
            found = {side: next((k for k in kinds[side] if k[0] == kind), None) for side in trees}
            rounds = 1 if kind.split()[0] in LONG else args.rounds
            times: dict[str, list[float]] = {side: [] for side in trees}
            for _ in range(rounds):
                for side, tree in trees.items():
                    if found[side] is not None:
                        times[side].append(time_stage(tree, found[side][1]))
            for side in trees:
                entry[side] = {"stage": found[side][1], "variants": found[side][2],
                               "seconds": [round(t, 1) for t in times[side]]} \
                    if found[side] else None  # fmt: skip
            print(json.dumps(entry), flush=True)
            rows.append(entry)
        result = {"commits": commits, "rounds": args.rounds, "stages": rows,
                  "cpus": os.cpu_count(), "measured": time.strftime("%Y-%m-%d")}  # fmt: skip
        out = Path(args.out)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
        print(markdown(result))
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                           capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def markdown(result: dict) -> str:
    """The per-stage table of a ``bench_pipeline.json``, with the estimated totals."""
    lines = [
        f"Measured {result['measured']} on {result['cpus']} CPU cores: one variant of each "
        f"stage kind, `dvc repro -s -f`, before ({result['commits']['before'][:7]}) and after "
        f"({result['commits']['after'][:7]}) alternating; median seconds. Total = median x "
        "variants, summed.",
        "",
        "| stage | variants before / after | before (s) | after (s) | speed-up |",
        "|---|---|---|---|---|",
    ]
    totals = {"before": 0.0, "after": 0.0}
    for row in result["stages"]:
        cells = {}
        for side in totals:
            entry = row[side]
            if entry is None:
                cells[side] = (None, 0)
                continue
            median = statistics.median(entry["seconds"])
            cells[side] = (median, entry["variants"])
            totals[side] += median * entry["variants"]
        (b, nb), (a, na) = cells["before"], cells["after"]
        ratio = f"{b / a:.2f}x" if a and b else ""
        lines.append(f"| {row['kind']} | {nb} / {na} | {'' if b is None else f'{b:.1f}'} | "
                     f"{'' if a is None else f'{a:.1f}'} | {ratio} |")  # fmt: skip
    b, a = totals["before"], totals["after"]
    lines.append(f"| **total (estimate)** | | **{b / 60:.1f} min** | **{a / 60:.1f} min** | "
                 f"**{b / a:.2f}x** |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--markdown":
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
    else:
        main()
