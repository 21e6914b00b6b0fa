"""Fine-tune budgets that grow until random init's train loss is at a plateau."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from initbench.comparison.budget import (
    budget_file,
    budget_line,
    read_budget_file,
    read_budgets,
    read_searches,
)
from initbench.comparison.budget_search import find_budget
from initbench.comparison.protocols import finetune, result_rows
from initbench.comparison.settings import budget_clause
from initbench.core.errors import InitbenchError
from initbench.training.plateau import plateau_checks, plateau_stop
from tests.test_protocols import CPU, QUICK_MODEL, _checkpoint, _data, _finetune_params, _params


def _first_stop(losses, floor, every):
    stop = plateau_stop(floor, every)
    return next((s for s in range(1, len(losses) + 1) if stop(list(losses[:s]))), None)


def test_a_flat_curve_stops_at_the_second_check_never_the_first():
    losses = [1.0 + 0.05 * (-1) ** i for i in range(200)]  # flat, with step-to-step noise
    checks = plateau_checks(losses, 40, 20)
    assert [c["step"] for c in checks[:3]] == [40, 60, 80] and checks[0]["reached"]
    assert _first_stop(losses, 40, 20) == 60  # two checks in a row: 40 and 60


def test_a_falling_curve_runs_to_its_plateau_and_a_still_falling_one_never_stops():
    rng = np.random.default_rng(1)
    steps = np.arange(600)
    falling_then_flat = np.where(steps < 300, 2.0 - steps / 150, 0.0) + rng.normal(0, 0.05, 600)
    stop = _first_stop(falling_then_flat.tolist(), 100, 50)
    checks = {c["step"]: c["reached"] for c in plateau_checks(falling_then_flat, 100, 50)}
    assert stop is not None and stop > 300  # the last third must lie past the fall
    assert (
        checks[stop]
        and checks[stop - 50]
        and not any(checks[s] and checks[s - 50] for s in checks if 150 <= s < stop)
    )
    still_falling = (2.0 - steps / 300 + rng.normal(0, 0.05, 600)).tolist()
    assert _first_stop(still_falling, 100, 50) is None


def test_one_passing_check_between_failing_ones_does_not_stop():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.05, 400)
    losses = np.r_[np.linspace(3, 1, 100), np.full(50, 1.0), np.linspace(1, 0, 250)] + noise
    checks = plateau_checks(losses.tolist(), 50, 50)
    alone = [c["step"] for c in checks if c["reached"]]
    assert alone, "the curve must pass some check for this test to mean anything"
    assert _first_stop(losses.tolist(), 50, 50) is None


def test_a_run_stopped_early_is_the_start_of_the_longer_run(tmp_path):
    """The budget search's premise: a run stopped at step s equals a run of s steps."""
    data, init = _data(), _checkpoint(tmp_path, 1)
    params = _finetune_params(epochs=1, min_steps=0, lr=0.01, augment=True)
    short = finetune(data, init, QUICK_MODEL, params, 0.5, 3, CPU, log=lambda s: None, steps=9)
    stopped = finetune(data, init, QUICK_MODEL, params, 0.5, 3, CPU, log=lambda s: None,
                       steps=40, stop=lambda losses: len(losses) == 9)  # fmt: skip
    assert stopped.steps == short.steps == 9
    assert stopped.history[-1]["step"] == 9
    for a, b in zip(short.model.state_dict().values(), stopped.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    assert torch.equal(short.test.predictions, stopped.test.predictions)


def _search_params(**finetune):
    params = _params()
    values = {"epochs": 1, "min_steps": 10, "batch_size": 8, "augment": False} | finetune
    return dataclasses.replace(params, model=QUICK_MODEL,
                               finetune=dataclasses.replace(params.finetune, **values))  # fmt: skip


def test_find_budget_grows_from_the_floor_and_stops_at_max_steps_or_a_plateau(tmp_path):
    data, init = _data(), _checkpoint(tmp_path, 1)
    off = find_budget(data, init, _search_params(until_plateau=False), 0.5, 3, CPU)
    assert off == {"label_fraction": 0.5, "steps": 10, "floor": 10, "max_steps": 4000,
                   "reached": None, "checks": []}  # fmt: skip
    found = find_budget(data, init, _search_params(max_steps=400), 0.5, 3, CPU)
    assert found["floor"] == 10 and 10 < found["steps"] <= 400
    steps = [c["step"] for c in found["checks"]]
    assert steps[0] == 10 and steps[1] - steps[0] == 5 and steps[-1] <= found["steps"]
    assert found["reached"] is True  # the toy task's loss flattens well before 400 steps
    assert steps[-1] == found["steps"]
    passed = [c["reached"] for c in found["checks"]]
    assert passed[-2:] == [True, True]  # stopped by the rule: the last two checks passed,
    assert not any(a and b for a, b in itertools.pairwise(passed[:-1]))  # no two before
    capped = find_budget(data, init, _search_params(max_steps=16), 0.5, 3, CPU)
    assert capped["steps"] == 16 and capped["reached"] is False


def test_every_init_fine_tunes_for_the_budget_it_is_given(tmp_path):
    params = _params()
    rows = result_rows("finetune", _data(), _checkpoint(tmp_path, 2), params, [0.25, 0.5],
                       seed=5, device=CPU, budgets={0.25: 7, 0.5: 11})  # fmt: skip
    assert [(r["label_fraction"], r["steps"], r["history"][-1]["step"]) for r in rows] == [
        (0.25, 7, 7), (0.5, 11, 11)
    ]  # fmt: skip


def _budget_file(tmp_path, budgets):
    path = tmp_path / "budget.json"
    path.write_text(json.dumps({"reference": "random", "seed": 0, "finetune_seed": 0,
                                "budgets": budgets}))  # fmt: skip
    return path


def _record(fraction, steps, reached, floor=500):
    checks = [{"step": s} for s in range(floor, steps + 1, floor // 2)] if reached else []
    return {"label_fraction": fraction, "steps": steps, "floor": floor, "max_steps": 4000,
            "reached": reached, "checks": checks}  # fmt: skip


def test_the_budget_file_is_read_per_fraction_and_a_missing_one_is_named(tmp_path):
    path = _budget_file(tmp_path, [_record(0.01, 2250, True), _record(0.05, 4000, False)])
    assert read_budgets(path, [0.05, 0.01]) == {0.05: 4000, 0.01: 2250}
    with pytest.raises(InitbenchError, match=r"budget\.json: no budget for label fraction"
                                             r"\(s\) 0\.1 \(it has 0\.01, 0\.05\)"):  # fmt: skip
        read_budgets(path, [0.01, 0.1])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InitbenchError, match=r"bad\.json: not a fine-tune budget file"):
        read_budgets(tmp_path / "bad.json", [0.01])
    with pytest.raises(InitbenchError, match=r"dvc repro --glob 'finetune_budget@\*'"):
        read_budgets(tmp_path / "absent.json", [0.01])


def test_the_report_says_how_each_budget_was_set(tmp_path):
    path = _budget_file(tmp_path, [_record(0.01, 2250, True), _record(0.05, 4000, False)])
    budget = read_budget_file(path, [0.01, 0.05])
    assert budget_line(budget["budgets"][0.01]) == (
        "2,250 steps at 1% (the reference's train loss at a plateau at steps 2,000 and 2,250)"
    )
    assert budget_line(budget["budgets"][0.05]) == (
        "4,000 steps at 5% (finetune.max_steps: NOT at a plateau yet)"
    )
    assert budget_line(_record(0.01, 750, True) | {"checks": []}).endswith("plateau at its end)")
    other = read_budget_file(_budget_file(tmp_path, [_record(0.01, 1750, True),
                                                     _record(0.05, 3500, True)]),
                             [0.01, 0.05]) | {"seed": 1}  # fmt: skip
    finetune_params = _params().finetune
    clause = budget_clause(finetune_params, {0.01: 2250, 0.05: 4000}, [budget, other])
    assert clause.startswith(f"budgets grown from max({finetune_params.epochs} epochs, ")
    assert "random init's train loss on that seed's labelled subset" in clause
    assert clause.endswith(
        "then the same for every init of the seed: 1%: 2,250 (seed 0), 1,750 (seed 1) steps; "
        "5%: 4,000 (seed 0, max_steps: NOT at a plateau), 3,500 (seed 1) steps"
    )
    floors = read_budget_file(_budget_file(tmp_path, [_record(0.01, 500, None)]), [0.01])
    plain = budget_clause(finetune_params, {0.01: 500}, [floors])
    assert plain.endswith(": 500 steps at 1%") and "grown" not in plain


def test_each_seed_s_search_record_is_read_by_its_name(tmp_path):
    for seed in (0, 2):
        (tmp_path / budget_file(seed, 1)).write_text(json.dumps(
            {"seed": seed, "finetune_seed": 1, "budgets": [_record(0.01, 500 + seed, True)]}))  # fmt: skip
    records = read_searches(tmp_path, [(2, 1), (0, 1)], [0.01])
    assert [(r["seed"], r["budgets"][0.01]["steps"]) for r in records] == [(2, 502), (0, 500)]
    with pytest.raises(InitbenchError, match=r"seed1-ft1\.json: not a fine-tune budget file"):
        read_searches(tmp_path, [(1, 1)], [0.01])
