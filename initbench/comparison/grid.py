"""The comparison's grid, named once: its protocols, its reference init, and the key of a
label fraction in metrics and summaries."""

from __future__ import annotations

#: The two ways an init is judged (:mod:`initbench.comparison.protocols`).
PROTOCOLS: tuple[str, ...] = ("finetune", "linear_probe")
#: Every other init is compared with this one.
REFERENCE = "random"


def fraction_key(fraction: float) -> str:
    """``0.01 -> "labels_1%"``: a metrics key that reads well in ``dvc metrics diff``."""
    return f"labels_{fraction * 100:g}%"
