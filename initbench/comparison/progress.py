"""The comparison's overall progress, across its DVC stages.

Each ``compare_run`` variant (one init checkpoint's fine-tunes and probes) is its own DVC
stage and process, so no process sees the whole. They share a small JSON file in DVC's
temporary folder (``.dvc/tmp``, never versioned), one per ``dvc repro`` or ``dvc exp run``
process, in which each finished variant adds its wall time; from it each prints how many
variants are done, the time so far and an estimate of the time left. Nothing here is an
output of a stage or changes one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from initbench.core.files import write_json

PREFIX = "initbench-compare-progress-"


def dvc_process() -> str | None:
    """``<PID>-<start time>`` of the nearest ancestor process that runs DVC (read from
    Linux's ``/proc``; the start time tells a reused PID apart), or ``None`` elsewhere or
    outside DVC."""
    pid = os.getppid()
    for _ in range(6):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        names = [os.path.basename(os.fsdecode(arg)) for arg in args[:3]]
        if "dvc" in names or names[1:3] == ["-m", "dvc"]:
            return f"{pid}-{stat[19]}"  # field 22 of stat: start time, in clock ticks
        pid = int(stat[1])  # the parent's PID
        if pid <= 1:
            return None
    return None


def _running(process: str) -> bool:
    """Whether the process :func:`dvc_process` named ``process`` is still running."""
    pid, _, started = process.partition("-")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return stat[19] == started


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def record_run(
    total: int,
    started: float,
    folder: str | os.PathLike[str],
    process: str,
    now: float | None = None,
) -> str:
    """Add one finished variant to ``process``'s progress file in ``folder``; return the
    line to print, e.g. ``comparison: 7 variant(s) done in this dvc repro (at most 12),
    5 min 40 s so far; at most 5 left, about 4 min at 49 s a variant``.

    ``total``: variants in the comparison (this repro runs those whose inputs changed, so
    at most this many); ``started``: when this variant began (``time.time()``);
    ``process``: the DVC process, as :func:`dvc_process` names it. Files of DVC processes
    that are gone (or whose PID now belongs to a later process) are removed.
    """
    now = time.time() if now is None else now
    folder = Path(folder)
    path = folder / f"{PREFIX}{process}.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {"started": started, "runs": []}
    state["runs"].append(round(now - started, 3))
    write_json(path, state)
    for other in folder.glob(f"{PREFIX}*.json"):
        name = other.stem.removeprefix(PREFIX)
        if name != process and not _running(name):
            other.unlink(missing_ok=True)
    done, mean = len(state["runs"]), sum(state["runs"]) / len(state["runs"])
    left = max(total - done, 0)
    line = (
        f"comparison: {done} variant(s) done in this dvc repro (at most {total}), "
        f"{_duration(now - state['started'])} so far"
    )
    if left:
        each = _duration(mean)
        line += f"; at most {left} left, about {_duration(left * mean)} at {each} a variant"
    return line


def report_run(total: int, started: float) -> str | None:
    """:func:`record_run` for a stage run by DVC (``DVC_ROOT`` set, Linux); ``None`` else."""
    root = os.environ.get("DVC_ROOT")
    process = dvc_process()
    if not root or process is None:
        return None
    try:
        return record_run(total, started, Path(root) / ".dvc" / "tmp", process)
    except OSError:  # progress is a courtesy; never fail a run over it
        return None
