"""What a stage run under torchrun prints: its processes' lines, without torchrun's own.

torchrun (``torch.distributed.run``) shares its stderr with the processes it starts and
adds to it: a banner about ``OMP_NUM_THREADS``, log lines of its agent, and on a failure
its own ``ChildFailedError`` traceback and a table of failed processes. Every process
also prints the same ``error:`` line when they all meet the same bad input. A
:class:`TorchrunLog` fed torchrun's stderr line by line keeps the processes' lines, each
``error:`` line once, and turns the failure table into one line naming the process that
failed first and how, when no process said why itself.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field

#: A log line of torchrun's agent (glog format, from torch.distributed's own modules).
_AGENT_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S*torch/distributed/\S+\] ")
_BANNER = ("*" * 20, "Setting OMP_NUM_THREADS environment variable for each process")
_FAILED = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"


def _how(exitcode: int) -> str:
    """``-9 -> "killed by SIGKILL"``, ``1 -> "exit status 1"``."""
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


@dataclass
class TorchrunLog:
    """Filters torchrun's stderr (module docstring); ``nproc`` processes per machine."""

    nproc: int
    errors: list[str] = field(default_factory=list)  # the distinct error: lines, in order
    _traceback: list[str] | None = None  # a traceback being read, until its exception line
    _table: list[str] | None = None  # torchrun's failure table, once it started

    def feed(self, line: str) -> list[str]:
        """The lines to print for one line of torchrun's stderr (``line`` without its newline)."""
        if self._table is not None:
            self._table.append(line)
            return []
        if self._traceback is not None:
            if line.startswith((" ", "\t")) or not line.strip():
                self._traceback.append(line)
                return []
            block, self._traceback = [*self._traceback, line], None
            if line.startswith(_FAILED):
                self._table = []  # the table follows: torchrun's, not a process's
                return []
            return block
        if line.startswith("Traceback (most recent call last):"):
            self._traceback = [line]
            return []
        if _AGENT_LINE.match(line) or line.startswith(_BANNER) or not line.strip():
            return []
        if line == "interrupted":  # every process's; the launching stage says it once
            self.errors.append(line)
            return []
        if line.startswith("error:"):
            if line in self.errors:
                return []
            self.errors.append(line)
        return [line]

    def finish(self, returncode: int) -> list[str]:
        """The closing lines once torchrun exited with ``returncode``: a traceback left
        unfinished, and, when it failed and no process printed an ``error:`` line, one line
        naming the process that failed first and how."""
        lines = self._traceback or []
        self._traceback = None
        if returncode == 0 or any(e.startswith("error:") for e in self.errors):
            return lines
        rank, exitcode = self._root_cause()
        if rank is None:
            return [*lines, f"error: torchrun failed (exit status {returncode})"]
        return [*lines, f"error: process {rank} of {self.nproc} failed ({_how(exitcode)}); "
                        "any error it printed is above"]  # fmt: skip

    def _root_cause(self) -> tuple[int | None, int]:
        """Rank and exit code of the table's "Root Cause (first observed failure)"."""
        table = self._table or []
        start = next((i for i, line in enumerate(table) if line.startswith("Root Cause")), 0)
        rank = exitcode = None
        for line in table[start:]:
            if rank is None and (m := re.match(r"\s*rank\s*:\s*(\d+)", line)):
                rank = int(m.group(1))
            if exitcode is None and (m := re.match(r"\s*exitcode\s*:\s*(-?\d+)", line)):
                exitcode = int(m.group(1))
        return (rank, exitcode) if rank is not None and exitcode is not None else (None, 0)
