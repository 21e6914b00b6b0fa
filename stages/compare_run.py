"""Stage compare_run: runs of the comparison for one init checkpoint and seed.

``--protocol finetune`` fine-tunes once per label fraction and fine-tune seed (the dvc.yaml
matrix gives one of each per variant). ``--protocol linear_probe`` extracts the frozen
encoder's features once and fits one probe per fraction and fine-tune seed. Without
``--label-fractions`` or ``--finetune-seeds``, they are ``compare.label_fractions`` and
``compare.finetune_seeds`` from params.yaml. The output is a JSON list, one row a run.
"""

import argparse
import time

from initbench.comparison.grid import run_label
from initbench.comparison.progress import report_run
from initbench.comparison.protocols import PROTOCOLS, check_label_fractions, result_rows
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
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
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
    if args.protocol == "finetune":  # the probe trains no network: always one process
        check_dataset(args.dataset)  # once, here, not in every process
        relaunch_under_torchrun(params.nproc_per_node, params.threads)
    device = resolve_device(params.device)
    configure_torch(device, params.threads)
    device = join_process_group(device)
    data = load_dataset(args.dataset)
    check_label_fractions(data, params.compare.label_fractions, fractions)
    strategy = str(read_checkpoint(args.init)["strategy"])
    rows = result_rows(args.protocol, data, args.init, params, fractions, args.seed, device,
                       finetune_seeds)  # fmt: skip
    if not is_local_main():
        return  # each machine's first process writes the outputs
    ran_on = run_info(device)
    rows = [{"init": strategy, "seed": args.seed, "protocol": args.protocol} | r
            | {"run_info": ran_on} for r in rows]  # fmt: skip
    write_json(args.out, rows)
    for r in rows:
        print(f"compare_run: {args.protocol} {strategy} seed "
              f"{run_label(args.seed, r['finetune_seed'])} labels {r['label_fraction']:g}: "
              f"test accuracy {r['accuracy']:.4f}")  # fmt: skip
    c = params.compare
    # the fine-tunes, one variant each, and the probes, one variant an init, seed and
    # fine-tune seed
    runs = len(c.inits) * len(c.seeds) * len(c.finetune_seeds) * (len(c.label_fractions) + 1)
    line = report_run(runs, started)
    if line:
        print(line)


if __name__ == "__main__":
    run(main)
