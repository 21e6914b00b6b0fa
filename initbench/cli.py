"""What every stage's ``main`` shares: one-line errors instead of tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable

from initbench.errors import InitbenchError


def run(main: Callable[[], None]) -> None:
    """Call ``main``; an :class:`InitbenchError` becomes ``error: ...`` on stderr and exit 1."""
    try:
        main()
    except InitbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
