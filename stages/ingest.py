"""Stage ingest: class folders of images -> a few uint8 arrays, split train/val/test.

Its imports are inside :func:`main`: the spawned decode workers import this module (as
``__mp_main__``) and should load only what decoding needs, not params' pydantic.
"""

import argparse
import sys
from pathlib import Path

from initbench.core.cli import run


def main() -> None:
    from initbench.core.files import write_json
    from initbench.data.dataset import save_dataset
    from initbench.data.ingest import ingest
    from initbench.data.report import report_lines, summary
    from initbench.params import load_params

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="folder of class folders (read only)")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--report", required=True, help="counts, skipped and ignored files (JSON)")
    p = load_params().data
    args = parser.parse_args()
    scratch = Path(args.out).parent  # a large output array is memory-mapped here, on disk
    scratch.mkdir(parents=True, exist_ok=True)
    dataset = ingest(
        args.data,
        p.image_size,
        p.channels,
        p.val_fraction,
        p.test_fraction,
        p.split_seed,
        scratch_dir=scratch,
        bit_depth=p.bit_depth,
    )
    save_dataset(args.out, dataset)
    report = summary(dataset)
    write_json(args.report, report)
    warnings, line = report_lines(report, args.data)
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(line)


if __name__ == "__main__":
    run(main)
