"""Stage ingest: class folders of images -> a few uint8 arrays, split train/val/test."""

import argparse
import sys
from pathlib import Path

from initbench.core.cli import run
from initbench.core.files import write_json
from initbench.data.dataset import save_dataset
from initbench.data.ingest import ingest, summary
from initbench.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="folder of class folders (read only)")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--report", required=True, help="counts, skipped and ignored files (JSON)")
    args = parser.parse_args()
    p = load_params().data
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
    for item in dataset.skipped:
        print(f"skipped {args.data}/{item['path']}: {item['reason']}", file=sys.stderr)
    dup = report["duplicates"]
    if dup["groups"]:
        print(
            f"ingest: found {dup['groups']} group(s) of identical images ({dup['images']} "
            f"copies beyond the first, {dup['cross_class_groups']} group(s) across class "
            "folders); each group kept in one split",
            file=sys.stderr,
        )
    high = report.get("high_bit_depth")
    if high:
        how = "data.bit_depth" if high["bit_depth_param"] != "auto" else "the largest value"
        print(
            f"ingest: {high['images']} image(s) of 16-bit (or 32-bit integer) grayscale, values "
            f"up to {high['max_value']}: mapped as {high['bit_depth']}-bit data "
            f"(0..{2 ** high['bit_depth'] - 1} -> 0..255, from {how}; data.bit_depth: "
            f"{high['bit_depth_param']})",
            file=sys.stderr,
        )
    ignored = ", ".join(f"{n} {kind}" for kind, n in report["ignored"].items() if n)
    print(
        f"ingest: {report['images']} images, {report['classes']} classes, split {report['split']}; "
        f"skipped {report['skipped']['count']} unreadable; ignored {ignored or 'none'}"
    )


if __name__ == "__main__":
    run(main)
