"""The comparison's overall progress line (initbench.comparison.progress)."""

import json
import os
from pathlib import Path

import pytest

from initbench.comparison import progress


def test_each_variant_adds_to_the_count_the_time_so_far_and_the_estimate(tmp_path):
    first = progress.record_run(36, started=1000.0, folder=tmp_path, process="4242-7", now=1030.0)
    assert first == ("comparison: 1 variant(s) done in this dvc repro (at most 36), 30 s so far; "
                     "at most 35 left, about 17 min 30 s at 30 s a variant")  # fmt: skip
    second = progress.record_run(36, started=1030.0, folder=tmp_path, process="4242-7", now=1080.0)
    assert second.startswith("comparison: 2 variant(s) done in this dvc repro (at most 36), "
                             "1 min 20 s so far; at most 34 left")  # fmt: skip
    assert "at 40 s a variant" in second  # the mean of 30 s and 50 s
    state = json.loads((tmp_path / f"{progress.PREFIX}4242-7.json").read_text())
    assert state == {"started": 1000.0, "runs": [30.0, 50.0]}


def test_another_dvc_process_counts_from_zero_and_gone_ones_are_cleared(tmp_path):
    progress.record_run(4, started=0.0, folder=tmp_path, process="999999999-5", now=10.0)
    # this test's own PID with another start time: a gone process whose PID was reused
    progress.record_run(4, started=0.0, folder=tmp_path, process=f"{os.getpid()}-0", now=10.0)
    line = progress.record_run(4, started=0.0, folder=tmp_path, process="1-1", now=5.0)
    assert line.startswith("comparison: 1 variant(s) done")
    names = [p.name for p in tmp_path.iterdir()]
    assert names == [f"{progress.PREFIX}1-1.json"]  # the others are gone


def test_the_last_variant_gives_no_estimate(tmp_path):
    line = progress.record_run(1, started=0.0, folder=tmp_path, process="7-1", now=3725.0)
    assert line == "comparison: 1 variant(s) done in this dvc repro (at most 1), 1 h 02 min so far"


def test_outside_dvc_nothing_is_reported(monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert progress.report_run(36, 0.0) is None


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="Linux /proc only")
def test_a_running_process_is_told_apart_from_a_reused_pid():
    started = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert progress._running(f"{os.getpid()}-{started}")
    assert not progress._running(f"{os.getpid()}-{int(started) + 1}")
    assert not progress._running("999999999-1")
