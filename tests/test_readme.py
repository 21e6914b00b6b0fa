"""The README's commands name columns and keys that exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _exp_show_keeps() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    commands = [
        line.split("#")[0] for line in lines if line.startswith("dvc exp show") and "--keep" in line
    ]
    keeps = []
    for command in commands:
        words = shlex.split(command)
        keeps.append(words[words.index("--keep") + 1])
    return keeps


def test_the_readme_exp_show_keep_pattern_keeps_the_accuracies_and_the_init():
    """DVC keeps a column whose name ``re.match``es the pattern (dvc exp show --keep)."""
    keeps = _exp_show_keeps()
    assert keeps, "the README shows no `dvc exp show --keep` command"
    metrics = json.loads((REPO / "metrics" / "finetune.json").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    wanted = ["Experiment", "test_accuracy", "macro_f1", "init", "seed"]
    assert all(name in metrics for name in wanted[1:3]) and {"init", "seed"} <= params.keys()
    for keep in keeps:
        pattern = re.compile(keep)
        assert all(pattern.match(name) for name in wanted), keep
        assert not pattern.match("model.channels"), keep  # it keeps a few columns, not all


def test_the_readme_lists_exactly_the_image_extensions_ingest_reads():
    from initbench.data.scan import IMAGE_EXTENSIONS

    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("Every raster format the pinned Pillow decodes")[1].split("taken from")[0]
    assert set(re.findall(r"`(\.[a-z0-9]+)`", section)) == IMAGE_EXTENSIONS
