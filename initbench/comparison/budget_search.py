"""Fine-tune budgets that grow until the train loss is at a plateau, the same for every init.

For each label fraction the reference init (``random``, at the comparison's first seed and
fine-tune seed) is fine-tuned from its step floor, ``max(finetune.epochs passes,
finetune.min_steps)``, and the plateau check of its per-step train loss
(:func:`initbench.training.plateau.plateau_check`) is taken at the floor and every
:func:`check_spacing` steps after it. The budget is the first step at which two checks in
a row pass: one passing check alone can be a fluke of the noise (a 1% fine-tune of the
embedded data passed at step 750 and failed at 1,000 to 1,750). Growth stops at
``finetune.max_steps``; a floor above it stands. Every init is then fine-tuned for that
budget, so budgets are identical across inits and stay paired, and each run's own
plateau check in the report flags an init, seed or fraction still not flat at it.

The learning rate is constant and the data order, augmentation and dropout draws do not
depend on the budget, so a run stopped at step ``s`` is exactly the first ``s`` steps of a
longer one (:func:`initbench.training.loop.optimize`): finding the budget costs one run
of the reference init a fraction, never one a candidate budget. The checks read the
train loss only: no labels beyond the run's own labelled subset choose the budget.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from initbench.comparison.budget import check_spacing
from initbench.comparison.protocols import finetune, labelled_train
from initbench.data.dataset import ArrayData
from initbench.params import Params
from initbench.training.loop import step_budget
from initbench.training.plateau import plateau_check


def plateau_checks(losses: Sequence[float], floor: int, every: int) -> list[dict[str, Any]]:
    """The plateau check of ``losses`` (per-step train loss, ``(steps,)``) cut at the
    floor and every ``every`` steps after it, as ``{"step", "reached", "change", "noise",
    "points"}`` rows."""
    return [{"step": s} | plateau_check(losses[:s]).record()
            for s in range(floor, len(losses) + 1, every)]  # fmt: skip


def plateau_stop(floor: int, every: int) -> Callable[[list[float]], bool]:
    """A ``stop`` for :func:`initbench.training.supervised.fit`: true at the first check
    step (``floor + k * every``, ``k >= 1``) whose check and the previous one both pass."""

    def stop(losses: list[float]) -> bool:
        steps = len(losses)
        if steps < floor + every or (steps - floor) % every:
            return False
        return bool(plateau_check(losses).reached and plateau_check(losses[:-every]).reached)

    return stop


def find_budget(
    data: ArrayData,
    init_path: str | os.PathLike[str],
    params: Params,
    label_fraction: float,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """The fine-tune budget at ``label_fraction``: the reference checkpoint ``init_path``
    fine-tuned at run seed ``seed`` (:func:`initbench.comparison.grid.run_seed`) until
    its train loss is at a plateau (see the module), or ``max_steps``.

    With ``finetune.until_plateau`` false nothing trains and the budget is the floor.

    Returns:
        ``label_fraction``, ``steps`` (the budget), ``floor``, ``max_steps``, ``reached``
        (two checks in a row passed; ``None`` when nothing trained) and ``checks``
        (:func:`plateau_checks` of the run).

    Raises:
        CheckpointError: as :func:`initbench.comparison.protocols.classifier_from_init`.
    """
    f = params.finetune
    train, _ = labelled_train(data, label_fraction, seed)
    floor = step_budget(len(train), f.batch_size, f.epochs, f.min_steps)
    record = {"label_fraction": label_fraction, "steps": floor, "floor": floor,
              "max_steps": f.max_steps, "reached": None, "checks": []}  # fmt: skip
    if not f.until_plateau or f.max_steps <= floor:
        return record
    every = check_spacing(floor)
    captured: list[float] = []

    def stop(losses: list[float]) -> bool:
        captured[:] = losses
        return plateau_stop(floor, every)(losses)

    full = dataclasses.replace(f, freeze_encoder=False)
    result = finetune(data, init_path, params.model, full, label_fraction, seed, device,
                      steps=f.max_steps, stop=stop)  # fmt: skip
    checks = plateau_checks(captured, floor, every)
    reached = len(checks) >= 2 and bool(checks[-1]["reached"] and checks[-2]["reached"])
    return record | {"steps": result.steps, "reached": reached, "checks": checks}
