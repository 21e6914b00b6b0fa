"""Stage finetune_budget: the comparison's fine-tune budget at each label fraction.

Random init (the reference) at one seed and fine-tune seed is fine-tuned at each of
``compare.label_fractions`` until its train loss is at a plateau
(:mod:`initbench.comparison.budget_search`), at most ``finetune.max_steps``; every init's
fine-tunes at that seed and fine-tune seed then run that many steps, so no budget reads
labels beyond its runs' own labelled subset. With ``finetune.until_plateau: false`` nothing
trains and each budget is ``max(finetune.epochs passes, finetune.min_steps)``. It runs
in one process (``nproc_per_node`` does not apply).
"""

import argparse

from initbench.comparison.budget import REFERENCE, budget_line
from initbench.comparison.budget_search import find_budget
from initbench.comparison.grid import run_label, run_seed
from initbench.comparison.protocols import check_label_fractions
from initbench.core.cli import run
from initbench.core.errors import InitbenchError
from initbench.core.files import write_json
from initbench.data.dataset import check_dataset, load_dataset
from initbench.models.transfer import read_checkpoint
from initbench.params import load_params
from initbench.training.setup import configure_torch, resolve_device, run_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--init", required=True, help=f"the {REFERENCE} init checkpoint")
    parser.add_argument("--seed", required=True, type=int, help="its seed")
    parser.add_argument("--finetune-seed", type=int, default=0, help="fine-tune seed (>= 0)")
    parser.add_argument("--out", required=True,
                        help="the budgets, {label_fraction, steps} a fraction (JSON)")  # fmt: skip
    parser.add_argument("--search", required=True,
                        help="how each was found: floor, cap, plateau checks (JSON)")  # fmt: skip
    params = load_params()
    args = parser.parse_args()
    if args.finetune_seed < 0:
        parser.error(f"--finetune-seed must be >= 0, got {args.finetune_seed}")
    check_dataset(args.dataset)
    strategy = str(read_checkpoint(args.init)["strategy"])
    if strategy != REFERENCE:
        raise InitbenchError(f"{args.init}: a {strategy} checkpoint; the budgets are set on "
                             f"{REFERENCE} init, whatever the other inits")  # fmt: skip
    device = resolve_device(params.device)
    configure_torch(device, params.threads)
    data = load_dataset(args.dataset)
    fractions = params.compare.label_fractions
    check_label_fractions(data, fractions, fractions)
    seed = run_seed(args.seed, args.finetune_seed)
    budgets = []
    for fraction in fractions:
        budgets.append(find_budget(data, args.init, params, fraction, seed, device))
        print(f"finetune_budget: {budget_line(budgets[-1])}", flush=True)
    run = {"reference": REFERENCE, "seed": args.seed, "finetune_seed": args.finetune_seed}
    # The runs depend on the steps alone: a new cap or floor that moves no budget leaves
    # this file, and so every comparison run, as it was.
    write_json(args.out, run | {"budgets": [{"label_fraction": b["label_fraction"],
                                             "steps": b["steps"]} for b in budgets]})  # fmt: skip
    write_json(args.search, run | {"budgets": budgets, "run_info": run_info(device)})
    print(f"finetune_budget: {REFERENCE} seed {run_label(args.seed, args.finetune_seed)} -> "
          f"{args.out}, {args.search}")  # fmt: skip


if __name__ == "__main__":
    run(main)
