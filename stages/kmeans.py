"""Stage kmeans: k-means centroids of whitened patches become conv1's filters."""

import argparse
import json
from pathlib import Path

import numpy as np

from initbench.core.cli import run
from initbench.core.files import write_json, write_torch
from initbench.data.dataset import load_dataset
from initbench.inits.kmeans import kmeans_encoder
from initbench.models.transfer import encoder_meta, make_checkpoint
from initbench.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--patches", required=True, help="folder written by the patches stage")
    parser.add_argument("--seed", required=True, type=int, help="seed of k-means and the encoder")
    parser.add_argument("--out", required=True, help="init checkpoint to write")
    parser.add_argument("--report", required=True, help="patch counts, k-means stats (JSON)")
    params = load_params()
    args = parser.parse_args()
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    m = params.model
    data = load_dataset(args.dataset)
    folder = Path(args.patches)
    whitened = np.load(folder / "whitened.npy", allow_pickle=False)
    matrix = np.load(folder / "zca_matrix.npy", allow_pickle=False)
    counts = json.loads((folder / "counts.json").read_text())
    encoder, init = kmeans_encoder(
        data.channels, m.channels, m.dropout, whitened, matrix, args.seed
    )
    write_torch(
        args.out,
        make_checkpoint(
            "kmeans", encoder, encoder_meta(data.channels, m.channels, data.image_size)
        ),
    )
    write_json(args.report, init.metrics(counts["sampled"], counts["dropped_flat"]))
    print(f"kmeans: {len(init.weight)} filters, {init.distinct_filters} distinct, "
          f"{init.degenerate_filters} left at default init; {len(whitened)} patches, "
          f"inertia {init.inertia:.1f}, {init.iterations} iterations")  # fmt: skip


if __name__ == "__main__":
    run(main)
