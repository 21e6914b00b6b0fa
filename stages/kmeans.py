"""Stage kmeans: k-means centroids of whitened patches become conv1's filters."""

import argparse
from pathlib import Path

import numpy as np
import torch

from initbench.cli import run
from initbench.data import load_dataset
from initbench.errors import InitbenchError
from initbench.files import write_json, write_png, write_torch
from initbench.images import filters_to_uint8, tile
from initbench.kmeans_init import conv1_from_centroids, kmeans_centroids
from initbench.params import load_params
from initbench.transfer import make_checkpoint, seeded_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--patches", required=True, help="folder written by the patches stage")
    parser.add_argument("--out", required=True, help="init checkpoint to write")
    parser.add_argument("--metrics", required=True, help="k-means inertia, iterations (JSON)")
    parser.add_argument("--image", required=True, help="picture of the conv1 filters (PNG)")
    args = parser.parse_args()
    params = load_params()
    m = params.model
    data = load_dataset(args.dataset)
    folder = Path(args.patches)
    raw, whitened, mean, matrix = (
        np.load(folder / f"{name}.npy", allow_pickle=False)
        for name in ("raw", "whitened", "zca_mean", "zca_matrix")
    )
    if len(whitened) < params.kmeans.clusters:
        raise InitbenchError(
            f"{folder}: {len(whitened)} patches for kmeans.clusters={params.kmeans.clusters}; "
            "raise patches.per_image or patches.max_images"
        )
    centroids, inertia, n_iter = kmeans_centroids(whitened, params.kmeans.clusters, params.seed)
    weight, bias = conv1_from_centroids(
        centroids, mean, matrix, raw, data.channels, params.patches.size
    )
    # Every layer but conv1 is the same seeded init as `random`, so the comparison isolates conv1.
    encoder = seeded_encoder(data.channels, m.channels, m.dropout, params.seed)
    conv1 = encoder.blocks[0].conv
    with torch.no_grad():
        conv1.weight.copy_(torch.from_numpy(weight))
        conv1.bias.copy_(torch.from_numpy(bias))
    write_torch(args.out, make_checkpoint("kmeans", encoder, data.encoder_meta(m.channels)))
    write_json(args.metrics, {"inertia": round(inertia, 4), "iterations": n_iter,
                              "patches": len(whitened)})  # fmt: skip
    write_png(args.image, tile(filters_to_uint8(weight), columns=8, scale=12, gap=2))
    print(f"kmeans: {len(centroids)} filters from {len(whitened)} patches; inertia {inertia:.1f}, "
          f"{n_iter} iterations")  # fmt: skip


if __name__ == "__main__":
    run(main)
