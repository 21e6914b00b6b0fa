"""Fine-tune budgets that grow until the train loss is at a plateau, the same for every init.

For each seed, fine-tune seed and label fraction the reference init (``random``) is
fine-tuned on that run's own labelled subset from its step floor, ``max(finetune.epochs passes,
finetune.min_steps)``, and the plateau check of its per-step train loss
(:func:`initbench.training.plateau.plateau_check`) is taken at the floor and every
half-floor steps after it. The budget is the first step at which two checks in a row pass
(:func:`initbench.training.plateau.plateau_stop`). Growth stops at
``finetune.max_steps``; a floor above it stands. Every init of that seed and fine-tune
seed is then fine-tuned for that budget, so budgets are identical across inits and stay
paired, and each run's own plateau check in the report flags an init still not flat at
it (the reference's own run is at a plateau by construction).

A run stopped at step ``s`` is exactly the first ``s`` steps of a longer one, so finding
the budget costs one run of the reference init a fraction and seed. The checks read the
train loss only, on the labelled subset the seed's runs train on: no other label chooses
the budget.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from initbench.comparison.protocols import finetune, labelled_train
from initbench.data.dataset import ArrayData
from initbench.params import Params
from initbench.training.loop import step_budget
from initbench.training.plateau import check_spacing, grown_budget, plateau_checks


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
        (:func:`initbench.training.plateau.plateau_checks` of the run).

    Raises:
        CheckpointError: as :func:`initbench.comparison.protocols.classifier_from_init`.
    """
    f = params.finetune
    train, _ = labelled_train(data, label_fraction, seed)
    floor = step_budget(len(train), f.batch_size, f.epochs, f.min_steps)
    record = {"label_fraction": label_fraction, "steps": floor, "floor": floor,
              "max_steps": f.max_steps, "reached": None, "checks": []}  # fmt: skip
    steps, rule = grown_budget(floor, f.max_steps if f.until_plateau else None)
    if rule is None:
        return record
    run: list[list[float]] = []

    def stop(losses: list[float]) -> bool:
        if not run:
            run.append(losses)  # optimize's own list: every step's loss once it is done
        return rule(losses)

    full = dataclasses.replace(f, freeze_encoder=False)
    result = finetune(data, init_path, params.model, full, label_fraction, seed, device,
                      steps=steps, stop=stop)  # fmt: skip
    checks = plateau_checks(run[0] if run else [], floor, check_spacing(floor))
    reached = len(checks) >= 2 and bool(checks[-1]["reached"] and checks[-2]["reached"])
    return record | {"steps": result.steps, "reached": reached, "checks": checks}
