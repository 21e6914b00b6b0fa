"""Stage patches: sample conv1-sized train patches; drop flat ones; contrast-normalize; ZCA-whiten."""

import argparse
from pathlib import Path

from initbench.core.cli import run
from initbench.core.files import write_json, write_npy
from initbench.data.dataset import load_dataset
from initbench.data.transforms import Normalize
from initbench.inits.patches import prepare_patches, sample_patches
from initbench.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--seed", required=True, type=int, help="seed of the patch sampling")
    parser.add_argument("--out", required=True, help="folder for patches, whitening and counts")
    params = load_params()
    args = parser.parse_args()
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    p = params.patches
    data = load_dataset(args.dataset)
    # Patches live in the space conv1 sees: train images, standardized like every stage does.
    images = Normalize(data.mean, data.std)(data.splits["train"].images).numpy()
    raw = sample_patches(images, p.size, p.per_image, p.max_images, args.seed)
    prepared = prepare_patches(raw, p.min_std, p.whiten, p.epsilon)  # DataError if all are flat
    out = Path(args.out)
    write_npy(out / "raw.npy", prepared.kept)
    write_npy(out / "whitened.npy", prepared.whitened)
    write_npy(out / "zca_mean.npy", prepared.zca_mean)
    write_npy(out / "zca_matrix.npy", prepared.zca_matrix)
    write_json(out / "counts.json", {"sampled": prepared.sampled,
                                     "dropped_flat": prepared.dropped_flat})  # fmt: skip
    print(f"patches: kept {len(prepared.kept)} of {prepared.sampled} patches of {raw.shape[1]} "
          f"values, {prepared.dropped_flat} flat (std <= {p.min_std:g}); whiten={p.whiten}")  # fmt: skip


if __name__ == "__main__":
    run(main)
