"""Stage compare_run: one run of the comparison (init x seed x label fraction x protocol)."""

import argparse
import dataclasses

from initbench.cli import run
from initbench.data import load_dataset
from initbench.files import write_json
from initbench.params import load_params
from initbench.protocols import finetune, probe
from initbench.train import resolve_device
from initbench.transfer import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--init", required=True, help="init checkpoint to start from")
    parser.add_argument("--seed", required=True, type=int, help="seed of the run")
    parser.add_argument("--label-fraction", required=True, type=float, help="in (0, 1]")
    parser.add_argument("--protocol", required=True, choices=["finetune", "linear_probe"])
    parser.add_argument("--out", required=True, help="the run's result (JSON)")
    args = parser.parse_args()
    params = load_params()
    device = resolve_device(params.device)
    data = load_dataset(args.dataset)
    strategy = str(read_checkpoint(args.init)["strategy"])
    row = {"init": strategy, "seed": args.seed, "label_fraction": args.label_fraction,
           "protocol": args.protocol}  # fmt: skip
    if args.protocol == "finetune":
        # The whole classifier trains here; finetune.freeze_encoder is for the single run only.
        full = dataclasses.replace(params.finetune, freeze_encoder=False)
        result = finetune(data, args.init, params.model, full, args.label_fraction, args.seed,
                          device)  # fmt: skip
        row |= {"accuracy": round(result.test.accuracy, 6),
                "macro_f1": round(result.test.macro_f1, 6), "train_images": result.train_images,
                "steps": result.steps, "history": result.history}  # fmt: skip
    else:
        outcome, n_train = probe(data, args.init, params.model, params.linear_probe,
                                 args.label_fraction, args.seed, device)  # fmt: skip
        row |= {"accuracy": round(outcome.accuracy, 6), "macro_f1": round(outcome.macro_f1, 6),
                "train_images": n_train, "iterations": outcome.iterations,
                "converged": outcome.converged}  # fmt: skip
    write_json(args.out, row)
    print(
        f"compare_run: {args.protocol} {strategy} seed {args.seed} "
        f"labels {args.label_fraction:g}: test accuracy {row['accuracy']:.4f}"
    )


if __name__ == "__main__":
    run(main)
