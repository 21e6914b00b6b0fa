"""The comparison's grid, named once: its protocols, its reference init, and the key of a
label fraction in metrics and summaries."""

from __future__ import annotations

import hashlib

#: The two ways an init is judged (:mod:`initbench.comparison.protocols`).
PROTOCOLS: tuple[str, ...] = ("finetune", "linear_probe")
#: Every other init is compared with this one.
REFERENCE = "random"


def fraction_key(fraction: float) -> str:
    """``0.01 -> "labels_1%"``: a metrics key that reads well in ``dvc metrics diff``."""
    return f"labels_{fraction * 100:g}%"


def run_seed(seed: int, finetune_seed: int) -> int:
    """The seed a fine-tune or probe of pretraining seed ``seed`` draws its label subset,
    head init, data order, views and dropout masks from, for fine-tune repeat
    ``finetune_seed``: ``seed`` itself for repeat 0 (one repeat is the plain paired-seed
    design), else a 31-bit hash of the pair, apart from the small seeds users list.

    Raises:
        ValueError: a seed is negative.
    """
    if seed < 0 or finetune_seed < 0:
        raise ValueError(f"seeds must be >= 0, got seed {seed}, fine-tune seed {finetune_seed}")
    if finetune_seed == 0:
        return seed
    digest = hashlib.sha256(f"initbench-finetune/{seed}/{finetune_seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1 | 1 << 24  # >= 2**24: no small seed


def run_label(seed: int, finetune_seed: int = 0) -> str:
    """``(2, 0) -> "2"``, ``(2, 1) -> "2/1"``: a run's name in reports, seed then fine-tune
    seed."""
    return str(seed) if finetune_seed == 0 else f"{seed}/{finetune_seed}"
