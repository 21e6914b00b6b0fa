"""How much of the default pipeline's time is not training, stage kind by stage kind.

    python benchmarks/overhead.py            # about 4 minutes on 2 cores
    python benchmarks/overhead.py --merge OUT IN [IN ...]   # median of measurements

Runs one variant of each stage kind's command (``benchmarks/stage_commands.py``), without
DVC, in a temporary copy of this checkout's inputs (``data/`` linked, ``artifacts/`` and
the chart templates copied), with timers around what trains:

- the optimizer steps: :func:`initbench.training.loop.optimize`, less the ``on_round``
  callbacks it calls (the val evaluations, progress lines and live curves);
- the fits of the linear probes (:func:`initbench.training.probes.linear_probe`, its
  cross-validation included) and of k-means (:func:`initbench.inits.kmeans.kmeans_centroids`).

Everything else a stage's process does is *not training*: the interpreter's start, imports
(torch, scikit-learn, the library), the first optimizer's set-up, loading the dataset,
evaluations, feature extraction, writing outputs and pictures. DVC's own share (its start,
hashing and lock file, about 1.5 s a stage) is outside these processes and comes from
``reports/bench_pipeline.json`` where that holds the same stage.

The default run's share is the sum over kinds of variants x seconds. Writes
``reports/bench_overhead.json``; ``benchmarks/bench.py`` renders it into
``reports/bench.md``, beside ``reports/bench_overhead_before.json`` (the same measurement
before the comparison's runs of one checkpoint shared a process) where that exists.
``--repro-seconds`` records a ``make repro`` wall time measured apart, for DVC's share.
This machine's speed drifts by 10% and more within the hour, so compare two commits by
measuring them in turn (a git worktree of the other commit, with ``data/`` linked and
``artifacts/`` copied) and merging each side's rounds with ``--merge``.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(module: str, argv: list[str], out: Path) -> None:
    """Run stage ``module`` with ``argv`` in this process, its training timed; write
    ``{"training_s": ...}`` to ``out`` at exit."""
    import atexit

    from initbench.training import loop, probes

    spent = {"training": 0.0, "callbacks": 0.0}

    def clocked(key, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start

        return wrapper

    optimize = loop.optimize

    def optimize_timed(*args, **kwargs):
        kwargs["on_round"] = clocked("callbacks", kwargs["on_round"])
        return clocked("training", optimize)(*args, **kwargs)

    loop.optimize = optimize_timed
    probes.linear_probe = clocked("training", probes.linear_probe)
    from initbench.inits import kmeans

    kmeans.kmeans_centroids = clocked("training", kmeans.kmeans_centroids)
    atexit.register(lambda: out.write_text(json.dumps(
        {"training_s": spent["training"] - spent["callbacks"]})))  # fmt: skip
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def commands() -> dict[str, list[str]]:
    """Each variant's command from dvc.yaml (``python -m stages.X ...``), as argv."""
    import yaml
    from stage_commands import ordered, variants

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    every = [v for name, stage in stages.items() for v in variants(name, stage, params)]
    return {name: shlex.split(stage["cmd"]) for name, stage in ordered(every)}


def measure(kinds: list[tuple[str, str, int]], work: Path) -> list[dict]:
    every = commands()
    rows = []
    for kind, name, count in kinds:
        argv = every[name]
        if argv[:2] != ["python", "-m"]:
            raise SystemExit(f"{name}: not a `python -m` command: {argv}")
        result = work / "training.json"
        result.unlink(missing_ok=True)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--timed", str(result), argv[2],
             *argv[3:]], cwd=work, capture_output=True, text=True,
            env=os.environ | {"PYTHONPATH": str(REPO)},
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stdout}{done.stderr}")
        training = json.loads(result.read_text())["training_s"]
        row = {"kind": kind, "stage": name, "variants": count, "seconds": round(seconds, 1),
               "training_s": round(training, 1)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    changed = f" with {', '.join(result['set'])}" if result.get("set") else ""
    lines = [f"Measured {result['measured']} on {result['cpus']} CPU cores at {result['commit']}"
             f"{changed}: "
             "one variant of each stage kind, its process timed from outside"
             + (f" (median of {result['rounds']} rounds)" if result.get("rounds", 1) > 1
                else "") + "; *training* is "
             "optimizer steps (without the val evaluations between rounds) and probe and "
             "k-means fits. Total = seconds x variants, summed.", "",
             "| stage | variants | process (s) | training (s) | not training |",
             "|---|---|---|---|---|"]  # fmt: skip
    total, trained = totals(result)
    for row in result["stages"]:
        share = 1 - row["training_s"] / row["seconds"] if row["seconds"] else 0.0
        lines.append(f"| {row['kind']} | {row['variants']} | {row['seconds']:.1f} | "
                     f"{row['training_s']:.1f} | {share:.0%} |")  # fmt: skip
    lines.append(f"| **default run** | | **{total / 60:.1f} min** | **{trained / 60:.1f} min** | "
                 f"**{1 - trained / total:.0%}** |")  # fmt: skip
    wall = result.get("repro_wall_s")
    if wall:
        lines += ["", f"Outside these processes, DVC's own work and each stage's interpreter "
                      f"start add about {(wall - total) / 60:.1f} min: `make repro` took "
                      f"{wall:,.0f} s of wall time against {total / 60:.1f} min of stage "
                      f"processes, so {1 - trained / wall:.0%} of its wall time is not optimizer "
                      "steps or probe and k-means fits."]  # fmt: skip
    return "\n".join(lines)


def totals(result: dict) -> tuple[float, float]:
    """``(process seconds, training seconds)`` of the default run: seconds x variants,
    summed over the stage kinds."""
    rows = result["stages"]
    return (sum(r["seconds"] * r["variants"] for r in rows),
            sum(r["training_s"] * r["variants"] for r in rows))  # fmt: skip


def merge(results: list[dict]) -> dict:
    """Several measurements of one commit (say, taken in turn with another commit's, so
    both see the same machine) as one: each stage kind's median seconds and training
    seconds, with ``rounds`` their number.

    Raises:
        SystemExit: the measurements are of different stage variants.
    """
    kinds = [[row["stage"] for row in result["stages"]] for result in results]
    if any(k != kinds[0] for k in kinds):
        raise SystemExit("--merge: the files measure different stage variants")
    rows = [first | {key: round(statistics.median(r["stages"][i][key] for r in results), 1)
                     for key in ("seconds", "training_s")}
            for i, first in enumerate(results[0]["stages"])]  # fmt: skip
    head = {k: v for k, v in results[0].items() if k != "stages"}
    return head | {"rounds": len(results), "stages": rows}


def write_result(result: dict, out: Path) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--timed":
        timed_run(sys.argv[3], sys.argv[4:], Path(sys.argv[2]))
        return
    if len(sys.argv) > 3 and sys.argv[1] == "--merge":
        result = merge([json.loads(Path(p).read_text()) for p in sys.argv[3:]])
        write_result(result, Path(sys.argv[2]))
        print(markdown(result))
        return
    sys.path.insert(0, str(REPO / "benchmarks"))  # pipeline.py, stage_commands.py
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "reports" / "bench_overhead.json"))
    parser.add_argument("--repro-seconds", type=float, metavar="S",
                        help="wall time of a `make repro` of the same commit and params, "
                             "measured apart; recorded to show DVC's share")  # fmt: skip
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="params.yaml values for this measurement, e.g. "
                             "finetune.min_steps=3000 (the commands are the same)")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="initbench-overhead-"))
    try:
        (work / "data").symlink_to(REPO / "data")
        shutil.copytree(REPO / "artifacts", work / "artifacts")
        shutil.copytree(REPO / ".dvc" / "plots", work / ".dvc" / "plots")
        import yaml

        params = yaml.safe_load((REPO / "params.yaml").read_text())
        for item in args.set:
            key, _, value = item.partition("=")
            *parents, leaf = key.split(".")
            node = params
            for part in parents:
                node = node[part]
            node[leaf] = yaml.safe_load(value)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        from pipeline import stage_kinds

        rows = measure(stage_kinds(REPO), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                            capture_output=True).stdout.strip()  # fmt: skip
    result = {"commit": commit, "cpus": os.cpu_count(), "measured": time.strftime("%Y-%m-%d"),
              "set": args.set} | ({"repro_wall_s": args.repro_seconds} if args.repro_seconds
                                  else {}) | {"stages": rows}  # fmt: skip
    write_result(result, Path(args.out))
    print(markdown(result))


if __name__ == "__main__":
    main()
