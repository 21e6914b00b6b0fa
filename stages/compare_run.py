"""Stage compare_run: the comparison's runs of one init checkpoint, seed and fine-tune seed.

Each label fraction is fine-tuned once (``finetune``), then the frozen encoder's features
are extracted once and one linear probe fitted a fraction (``linear_probe``), all in one
process: the imports (torch, scikit-learn, TorchDynamo through the first optimizer), the
dataset and the checkpoint are loaded once for every run of the checkpoint. Under torchrun
the fine-tunes run in every process and the probes in each machine's first process alone.
Each fine-tune runs the budget ``--budget`` gives its label fraction (the
``finetune_budget`` stage's, the same for every init). ``--protocols`` narrows it to one
of the two. Without ``--label-fractions`` or
``--finetune-seeds``, they are ``compare.label_fractions`` and ``compare.finetune_seeds``
from params.yaml. The output is a JSON list, one row a run (its ``protocol`` a key).
"""

import argparse
import time

from initbench.comparison.budget import read_budgets
from initbench.comparison.grid import PROTOCOLS, run_label
from initbench.comparison.progress import report_run
from initbench.comparison.protocols import check_label_fractions, result_rows
from initbench.core.cli import run
from initbench.core.files import write_json
from initbench.data.dataset import check_dataset, load_dataset
from initbench.models.transfer import read_checkpoint
from initbench.params import load_params
from initbench.training.distributed import (
    is_local_main,
    join_process_group,
    relaunch_under_torchrun,
)
from initbench.training.setup import configure_torch, resolve_device, run_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--init", required=True, help="init checkpoint to start from")
    parser.add_argument("--seed", required=True, type=int, help="seed of the runs")
    parser.add_argument("--label-fractions", nargs="+", type=float, metavar="F",
                        help="each in (0, 1]; default: compare.label_fractions")  # fmt: skip
    parser.add_argument("--finetune-seeds", nargs="+", type=int, metavar="F",
                        help="each >= 0; default: compare.finetune_seeds")  # fmt: skip
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                        help="which runs (default: both; the fine-tunes first)")  # fmt: skip
    parser.add_argument("--budget", help="the fine-tune budgets (finetune_budget's JSON); "
                                         "default: max(finetune.epochs, finetune.min_steps)")  # fmt: skip
    parser.add_argument("--out", required=True, help="the runs' results (JSON list)")
    params = load_params()
    args = parser.parse_args()
    started = time.time()
    fractions = args.label_fractions or params.compare.label_fractions
    if any(not 0 < fraction <= 1 for fraction in fractions):
        parser.error(f"--label-fractions must each be in (0, 1], got {fractions}")
    finetune_seeds = args.finetune_seeds or params.compare.finetune_seeds
    if any(f < 0 for f in finetune_seeds):
        parser.error(f"--finetune-seeds must each be >= 0, got {finetune_seeds}")
    protocols = [p for p in PROTOCOLS if p in args.protocols]  # the fine-tunes first
    budgets = read_budgets(args.budget, fractions) if args.budget else None
    if "finetune" in protocols:  # the probe trains no network: one process is enough
        check_dataset(args.dataset)  # once, here, not in every process
        relaunch_under_torchrun(params.nproc_per_node, params.threads)
    device = resolve_device(params.device)
    configure_torch(device, params.threads)
    device = join_process_group(device)
    data = load_dataset(args.dataset)
    check_label_fractions(data, params.compare.label_fractions, fractions)
    strategy = str(read_checkpoint(args.init)["strategy"])
    rows = []
    for protocol in protocols:
        if protocol == "linear_probe" and not is_local_main():
            break  # the probes run in the first process alone; the others are done
        rows += [{"protocol": protocol} | row
                 for row in result_rows(protocol, data, args.init, params, fractions, args.seed,
                                        device, finetune_seeds, budgets)]  # fmt: skip
    if not is_local_main():
        return  # each machine's first process writes the outputs
    ran_on = run_info(device)
    rows = [{"init": strategy, "seed": args.seed} | r | {"run_info": ran_on} for r in rows]
    write_json(args.out, rows)
    for r in rows:
        print(f"compare_run: {r['protocol']} {strategy} seed "
              f"{run_label(args.seed, r['finetune_seed'])} labels {r['label_fraction']:g}: "
              f"test accuracy {r['accuracy']:.4f}")  # fmt: skip
    c = params.compare
    line = report_run(len(c.inits) * len(c.seeds) * len(c.finetune_seeds), started)  # variants
    if line:
        print(line)


if __name__ == "__main__":
    run(main)
