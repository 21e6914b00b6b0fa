"""What every stage's ``main`` shares: one-line errors instead of tracebacks, and a last
line with the stage's wall time (recorded for ``reports/timing.md`` as well)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from initbench import STARTED
from initbench.core.errors import InitbenchError
from initbench.core.timing import record_stage


def run(main: Callable[[], None], *, wall_time: bool = True) -> None:
    """Call ``main``; an :class:`InitbenchError` becomes ``error: ...`` on stderr and exit 1.
    With ``wall_time`` (stages), the last line printed on success is
    ``<program>: done in <seconds> s``, and a stage run by DVC records that time for
    ``reports/timing.md`` (:func:`initbench.core.timing.record_stage`)."""
    try:
        try:
            main()
        except SystemExit as exc:  # a stage that ran its work under torchrun, say
            if wall_time and exc.code in (0, None):
                record_stage(time.perf_counter() - STARTED)
            raise
        if wall_time:
            name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "stage"
            seconds = time.perf_counter() - STARTED
            print(f"{name}: done in {seconds:.1f} s")
            record_stage(seconds)
    except InitbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for line in restore_hints():
            print(line, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


#: What a failed stage can point at, when the file differs from the last commit.
_HINTS = {
    "params.yaml": (
        "hint: params.yaml differs from the last commit (dvc exp run -S leaves its values "
        "there). `git checkout params.yaml && dvc repro` gets the committed results back; "
        "DVC restores each stage from its run cache in seconds"
    ),
    "data.dvc": (
        "hint: data.dvc differs from the last commit (dvc repro records a changed data/ "
        "there). `git checkout data.dvc && dvc checkout data.dvc && dvc repro` gets the "
        "committed data and results back"
    ),
}


def restore_hints() -> list[str]:
    """Lines for a failed stage run by DVC (``DVC_STAGE`` set): when ``params.yaml`` or
    ``data.dvc`` differ from Git's last commit, how to get the committed results back. DVC
    has deleted the stage's outputs by then and leaves the changed file as it is. Empty
    outside DVC, outside a Git work tree, or when neither file changed."""
    if not os.environ.get("DVC_STAGE"):
        return []
    try:
        changed = subprocess.run(
            ["git", "diff", "--name-only", "HEAD", "--", *_HINTS],
            cwd=os.environ.get("DVC_ROOT") or None,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if changed.returncode != 0:
        return []
    names = {Path(line).name for line in changed.stdout.splitlines()}
    return [hint for name, hint in _HINTS.items() if name in names]
