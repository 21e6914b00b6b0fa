"""What every stage's ``main`` shares: one-line errors instead of tracebacks, and a last
line with the stage's wall time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from initbench import STARTED
from initbench.errors import InitbenchError


def run(main: Callable[[], None], *, wall_time: bool = True) -> None:
    """Call ``main``; an :class:`InitbenchError` becomes ``error: ...`` on stderr and exit 1.
    With ``wall_time`` (stages), the last line printed on success is
    ``<program>: done in <seconds> s``."""
    try:
        main()
        if wall_time:
            name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "stage"
            print(f"{name}: done in {time.perf_counter() - STARTED:.1f} s")
    except InitbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
