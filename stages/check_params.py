"""Stage check_params: validate all of params.yaml before any work starts.

Its output is constant while the params are valid, so it never triggers re-runs.
"""

import argparse

from initbench.cli import run
from initbench.files import write_text
from initbench.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="marker file written when params are valid")
    args = parser.parse_args()
    load_params(args.params)
    write_text(args.out, "params.yaml is valid\n")


if __name__ == "__main__":
    run(main)
