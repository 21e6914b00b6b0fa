"""Stage init_random: the encoder's default PyTorch init from ``--seed``, as an init checkpoint."""

import argparse

from initbench.core.cli import run
from initbench.core.files import write_torch
from initbench.data.dataset import load_dataset
from initbench.models.cnn import seeded_encoder
from initbench.models.transfer import encoder_meta, make_checkpoint
from initbench.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--seed", required=True, type=int, help="seed of the default init")
    parser.add_argument("--out", required=True, help="init checkpoint to write")
    # params.yaml first: DVC fills the arguments from it (dvc.yaml's ${...}), so a bad
    # value is named by its key there, not by the flag it became.
    params = load_params()
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    m = params.model
    encoder = seeded_encoder(data.channels, m.channels, m.dropout, args.seed)
    write_torch(
        args.out,
        make_checkpoint(
            "random", encoder, encoder_meta(data.channels, m.channels, data.image_size)
        ),
    )
    print(f"init_random: wrote {args.out}")


if __name__ == "__main__":
    run(main)
