"""Stage simclr: contrastive pretraining of the encoder on two augmented views (no labels)."""

import argparse
from pathlib import Path

from initbench.core.cli import run
from initbench.core.files import write_json, write_torch
from initbench.data.dataset import check_dataset, load_dataset
from initbench.data.transforms import Normalize
from initbench.inits.simclr import build_simclr, knn_monitor, train_simclr
from initbench.models.transfer import encoder_meta, make_checkpoint
from initbench.params import load_params
from initbench.training.distributed import (
    is_local_main,
    join_process_group,
    relaunch_under_torchrun,
)
from initbench.training.loop import live_history
from initbench.training.setup import configure_torch, resolve_device, run_info, set_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--seed", required=True, type=int, help="seed of the init and training")
    parser.add_argument("--out", required=True, help="init checkpoint to write")
    parser.add_argument("--report", required=True, help="final loss and kNN accuracy (JSON)")
    parser.add_argument("--plots", required=True, help="folder for per-epoch loss/kNN (JSON)")
    params = load_params()
    args = parser.parse_args()
    p, m = params.simclr, params.model
    check_dataset(args.dataset)  # once, here, not in every process
    relaunch_under_torchrun(params.nproc_per_node, params.threads)
    device = resolve_device(params.device)
    configure_torch(device, params.threads)
    device = join_process_group(device)
    data = load_dataset(args.dataset)
    set_seed(args.seed)
    model = build_simclr(data.channels, data.image_size, m.channels, p.projection_dim, args.seed)
    model.to(device)
    normalize = Normalize(data.mean, data.std).to(device)
    result = train_simclr(
        model, normalize, data.splits["train"], data.splits["val"], epochs=p.epochs, min_steps=p.min_steps, lr=p.lr,
        batch_size=p.batch_size, temperature=p.temperature, seed=args.seed, device=device,
        on_history=live_history(Path(args.plots) / "history.json"),
        max_steps=p.max_steps if p.until_plateau else None,
    )  # fmt: skip
    if not is_local_main():
        return  # each machine's first process writes the outputs
    write_torch(
        args.out,
        make_checkpoint(
            "simclr", model.encoder, encoder_meta(data.channels, m.channels, data.image_size)
        ),
    )
    write_json(args.report, {"nt_xent": result.loss, "val_knn_accuracy": result.knn_accuracy,
                              "random_init_val_knn_accuracy": result.random_init_knn_accuracy,
                              "steps": result.steps, "images_seen": result.images_seen,
                              "plateau": result.plateau.record(),
                              "knn_monitor": knn_monitor(result),
                              "run_info": run_info(device)})  # fmt: skip
    write_json(Path(args.plots) / "history.json", result.history)
    print(f"simclr: kNN val accuracy {result.knn_accuracy:.4f} (initial encoder "
          f"{result.random_init_knn_accuracy:.4f}); {result.pairs_per_s:,.0f} image pairs/s; "
          f"{result.plateau.describe('NT-Xent')}")  # fmt: skip


if __name__ == "__main__":
    run(main)
