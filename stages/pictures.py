"""Stage pictures: the k-means conv1 filters and the autoencoder's reconstructions as PNGs.

The pictures are drawn here, not in the stages that make them, so an edit to how pictures
are drawn (``initbench/views``) re-runs this stage only, never pretraining.
"""

import argparse

import numpy as np

from initbench.core.cli import run
from initbench.core.errors import DataError
from initbench.core.files import write_png
from initbench.models.transfer import read_checkpoint
from initbench.views.pictures import filters_to_uint8, tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kmeans", required=True, help="k-means init checkpoint")
    parser.add_argument("--reconstructions", required=True,
                        help="autoencoder's val inputs and reconstructions (.npy)")  # fmt: skip
    parser.add_argument("--filters-image", required=True, help="conv1 filters (PNG)")
    parser.add_argument("--reconstructions-image", required=True,
                        help="val inputs over their reconstructions (PNG)")  # fmt: skip
    args = parser.parse_args()
    weight = read_checkpoint(args.kmeans)["encoder"]["blocks.0.conv.weight"].numpy()
    write_png(args.filters_image, tile(filters_to_uint8(weight), columns=8, scale=12, gap=2))
    pairs = np.load(args.reconstructions, allow_pickle=False)  # (2, n, C, H, W)
    if pairs.ndim != 5 or len(pairs) != 2:
        raise DataError(f"{args.reconstructions}: expected (2, n, C, H, W), got {pairs.shape}")
    write_png(args.reconstructions_image, tile(pairs.reshape(-1, *pairs.shape[2:]),
                                               pairs.shape[1], scale=3))  # fmt: skip
    print(f"pictures: wrote {args.filters_image} and {args.reconstructions_image}")


if __name__ == "__main__":
    run(main)
