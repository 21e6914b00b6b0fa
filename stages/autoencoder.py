"""Stage autoencoder: pretrain the encoder by reconstructing train images (no labels)."""

import argparse
from pathlib import Path

import numpy as np

from initbench.core.cli import run
from initbench.core.files import write_json, write_npy, write_torch
from initbench.data.dataset import check_dataset, load_dataset
from initbench.data.transforms import Normalize
from initbench.inits.autoencoder import (
    build_autoencoder,
    mean_image_loss,
    reconstructions,
    train_autoencoder,
)
from initbench.models.cnn import seeded_encoder
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
    parser.add_argument("--report", required=True, help="reconstruction losses (JSON)")
    parser.add_argument("--plots", required=True, help="folder for per-epoch loss (JSON)")
    parser.add_argument("--reconstructions", required=True,
                        help="val inputs and their reconstructions, uint8 (2, n, C, H, W) .npy")  # fmt: skip
    params = load_params()
    args = parser.parse_args()
    p, m = params.autoencoder, params.model
    check_dataset(args.dataset)  # once, here, not in every process
    relaunch_under_torchrun(params.nproc_per_node, params.threads)
    device = resolve_device(params.device)
    configure_torch(device, params.threads)
    device = join_process_group(device)
    data = load_dataset(args.dataset)
    set_seed(args.seed)
    encoder = seeded_encoder(data.channels, m.channels, m.dropout, args.seed)
    model = build_autoencoder(encoder, m.channels).to(device)
    normalize = Normalize(data.mean, data.std).to(device)
    train, val = data.splits["train"], data.splits["val"]
    result = train_autoencoder(model, normalize, train, val, epochs=p.epochs, min_steps=p.min_steps, lr=p.lr,
                               batch_size=p.batch_size, seed=args.seed, device=device,
                               on_history=live_history(Path(args.plots) / "history.json"),
                               max_steps=p.max_steps if p.until_plateau else None)  # fmt: skip
    if not is_local_main():
        return  # each machine's first process writes the outputs
    baseline = mean_image_loss(train, val)
    write_torch(
        args.out,
        make_checkpoint(
            "autoencoder", model.encoder, encoder_meta(data.channels, m.channels, data.image_size)
        ),
    )
    write_json(args.report, {"train_mse": round(result.train_loss, 6),
                             "val_mse": round(result.val_loss, 6),
                             "mean_image_val_mse": round(baseline, 6),
                             "steps": result.steps, "images_seen": result.images_seen,
                             "plateau": result.plateau.record(),
                             "run_info": run_info(device)})  # fmt: skip
    write_json(Path(args.plots) / "history.json", result.history)
    write_npy(args.reconstructions, np.stack(reconstructions(model, normalize, val, device)))
    print(f"autoencoder: val MSE {result.val_loss:.5f} vs mean-image baseline {baseline:.5f}; "
          f"{result.plateau.describe('train MSE')}")  # fmt: skip


if __name__ == "__main__":
    run(main)
