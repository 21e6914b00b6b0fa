"""Stage init_random: the encoder's default PyTorch init from ``seed``, as an init checkpoint."""

import argparse

from initbench.cli import run
from initbench.data import load_dataset
from initbench.files import write_torch
from initbench.model import Encoder
from initbench.params import load_params
from initbench.train import set_seed
from initbench.transfer import make_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--out", required=True, help="init checkpoint to write")
    args = parser.parse_args()
    params = load_params()
    data = load_dataset(args.dataset)
    set_seed(params.seed)
    encoder = Encoder(data.channels, params.model.channels, params.model.dropout)
    meta = {"in_channels": data.channels, "channels": params.model.channels,
            "image_size": data.image_size, "seed": params.seed}  # fmt: skip
    write_torch(args.out, make_checkpoint("random", encoder, meta))
    print(f"init_random: wrote {args.out}")


if __name__ == "__main__":
    run(main)
