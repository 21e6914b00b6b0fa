"""Stage check_params: validate params.yaml before ``finetune``, in about a second.

``finetune``'s checkpoint dep is ``artifacts/init/${init}/seed${seed}.pt``, so after a
misspelled ``dvc exp run -S init=kmean`` DVC would stop on that missing file, naming
neither the param nor its choices. ``finetune`` depends on this stage's output, so this
stage runs first and stops with one line naming the key and the valid choices.
"""

import argparse

from initbench.core.cli import run
from initbench.core.files import write_json
from initbench.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the init checkpoint finetune reads")
    parser.add_argument("--out", required=True, help="the detailed run's init and seed (JSON)")
    params = load_params()
    args = parser.parse_args()
    write_json(args.out, {"init": params.init, "seed": params.seed, "checkpoint": args.checkpoint})
    print(f"check_params: params.yaml is valid; finetune starts from {args.checkpoint}")


if __name__ == "__main__":
    run(main)
