"""Stage kmeans: k-means centroids of whitened patches become conv1's filters."""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from initbench.core.cli import run
from initbench.core.files import write_json, write_png, write_torch
from initbench.data.dataset import load_dataset
from initbench.inits.kmeans import kmeans_conv1
from initbench.models.cnn import seeded_encoder
from initbench.models.transfer import make_checkpoint
from initbench.params import load_params
from initbench.views.pictures import filters_to_uint8, tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--patches", required=True, help="folder written by the patches stage")
    parser.add_argument("--seed", required=True, type=int, help="seed of k-means and the encoder")
    parser.add_argument("--out", required=True, help="init checkpoint to write")
    parser.add_argument("--report", required=True, help="patch counts, k-means stats (JSON)")
    parser.add_argument("--image", required=True, help="picture of the conv1 filters (PNG)")
    args = parser.parse_args()
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    params = load_params()
    m = params.model
    data = load_dataset(args.dataset)
    folder = Path(args.patches)
    whitened = np.load(folder / "whitened.npy", allow_pickle=False)
    matrix = np.load(folder / "zca_matrix.npy", allow_pickle=False)
    counts = json.loads((folder / "counts.json").read_text())
    # Every layer but conv1 is the same seeded init as `random`, so the comparison isolates conv1.
    encoder = seeded_encoder(data.channels, m.channels, m.dropout, args.seed)
    conv1 = encoder.blocks[0].conv
    init = kmeans_conv1(whitened, matrix, conv1.weight.detach().numpy(),
                        conv1.bias.detach().numpy(), args.seed)  # fmt: skip
    with torch.no_grad():
        conv1.weight.copy_(torch.from_numpy(init.weight))
        conv1.bias.copy_(torch.from_numpy(init.bias))
    write_torch(args.out, make_checkpoint("kmeans", encoder, data.encoder_meta(m.channels)))
    write_json(args.report, init.metrics(counts["sampled"], counts["dropped_flat"]))
    write_png(args.image, tile(filters_to_uint8(init.weight), columns=8, scale=12, gap=2))
    print(f"kmeans: {len(init.weight)} filters, {init.distinct_filters} distinct, "
          f"{init.degenerate_filters} left at default init; {len(whitened)} patches, "
          f"inertia {init.inertia:.1f}, {init.iterations} iterations")  # fmt: skip


if __name__ == "__main__":
    run(main)
