"""Stage finetune: the single detailed run, from ``artifacts/init/${init}/seed${seed}.pt``."""

import argparse
from pathlib import Path

from initbench.comparison.protocols import check_label_fractions, finetune
from initbench.core.cli import run
from initbench.core.files import write_json, write_torch
from initbench.data.dataset import check_dataset, load_dataset
from initbench.params import load_params
from initbench.training.distributed import (
    is_local_main,
    join_process_group,
    relaunch_under_torchrun,
)
from initbench.training.loop import live_history
from initbench.training.setup import configure_torch, resolve_device, run_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--init", required=True, help="init checkpoint to start from")
    parser.add_argument("--model", required=True, help="fine-tuned model to write")
    parser.add_argument("--metrics", required=True, help="test metrics (JSON)")
    parser.add_argument("--plots", required=True, help="folder for plot data (JSON)")
    params = load_params()
    args = parser.parse_args()
    p = params.finetune
    check_dataset(args.dataset)  # once, here, not in every process
    relaunch_under_torchrun(params.nproc_per_node, params.threads)
    device = resolve_device(params.device)
    configure_torch(device, params.threads)
    device = join_process_group(device)
    data = load_dataset(args.dataset)
    check_label_fractions(data, [p.label_fraction], key="finetune.label_fraction")
    result = finetune(data, args.init, params.model, p, p.label_fraction, params.seed, device,
                      on_history=live_history(Path(args.plots) / "history.json"))  # fmt: skip
    if not is_local_main():
        return  # each machine's first process writes the outputs
    test, last = result.test, result.history[-1]
    # Measurements only (init and seed are params; counts go in the log): `dvc metrics show`
    # and `dvc exp show` tabulate every number here. run_info is a list, which they skip.
    metrics = {"test_accuracy": round(test.accuracy, 6), "macro_f1": round(test.macro_f1, 6),
               "run_info": run_info(device)}  # fmt: skip
    state = {k: v.cpu() for k, v in result.model.state_dict().items()}
    write_torch(args.model, {"state_dict": state, "classes": data.classes, "init": params.init})
    write_json(args.metrics, metrics)
    plots = Path(args.plots)
    write_json(plots / "history.json", result.history)
    actual = data.splits["test"].labels.tolist()
    write_json(plots / "confusion.json", [
        {"actual": data.classes[a], "predicted": data.classes[b]}
        for a, b in zip(actual, test.predictions.tolist(), strict=True)
    ])  # fmt: skip
    print(f"finetune ({params.init}, seed {params.seed}): test accuracy {test.accuracy:.4f}, "
          f"macro-F1 {test.macro_f1:.4f}, test loss {test.loss:.4f}, final val accuracy "
          f"{last['val_accuracy']:.4f} after {result.steps} steps on {result.train_images} "
          "labelled images")  # fmt: skip


if __name__ == "__main__":
    run(main)
