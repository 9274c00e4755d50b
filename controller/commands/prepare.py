"""`ekya prepare cityscapes ROOT OUT`: turn a dataset into per-camera object crops + a manifest."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=["cityscapes"], help="dataset format")
    parser.add_argument("root", help="dataset root (for cityscapes: contains gtFine/ and leftImg8bit/)")
    parser.add_argument("out", help="output directory (crops/ and manifest.csv)")
    parser.add_argument("--splits", default="train,val", help="comma-separated splits (default train,val)")
    parser.add_argument("--min-size", type=int, default=16, help="skip objects smaller than this (px)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second for timestamps")


def run(args: argparse.Namespace) -> int:
    import sys

    from trainer.streams.cityscapes import CityscapesError, prepare_cityscapes

    try:
        stats = prepare_cityscapes(args.root, args.out, tuple(s for s in args.splits.split(",") if s),
                                   min_size=args.min_size, fps=args.fps)
    except CityscapesError as exc:
        print(f"ekya prepare: {exc}", file=sys.stderr)
        return 2
    print(f"{stats.cities} cities, {stats.frames} frames -> {stats.crops} crops "
          f"({stats.skipped_small} too small) -> {stats.manifest}")
    return 0
