"""Stage patches: sample conv1-sized patches from train images; contrast-normalize; ZCA-whiten."""

import argparse
from pathlib import Path

import numpy as np

from initbench.cli import run
from initbench.data import load_dataset
from initbench.files import write_npy
from initbench.params import load_params
from initbench.patches import apply_zca, fit_zca, normalize_contrast, sample_patches
from initbench.train import Normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--out", required=True, help="folder for patches and the whitening")
    args = parser.parse_args()
    params = load_params()
    p = params.patches
    data = load_dataset(args.dataset)
    # Patches live in the space conv1 sees: train images, standardized like every stage does.
    images = Normalize(data.mean, data.std)(data.splits["train"].images).numpy()
    raw = sample_patches(images, p.size, p.per_image, p.max_images, params.seed)
    normalized = normalize_contrast(raw)
    dim = raw.shape[1]
    if p.whiten:
        mean, matrix = fit_zca(normalized, p.epsilon)
    else:
        mean, matrix = np.zeros(dim), np.eye(dim)
    out = Path(args.out)
    write_npy(out / "raw.npy", raw)
    write_npy(out / "whitened.npy", apply_zca(normalized, mean, matrix))
    write_npy(out / "zca_mean.npy", mean)
    write_npy(out / "zca_matrix.npy", matrix)
    print(f"patches: {len(raw)} patches of {dim} values (whiten={p.whiten})")


if __name__ == "__main__":
    run(main)
