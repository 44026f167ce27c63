"""``modseg demo``: a night drive whose sensors fail one after another, through the live node, scored."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_report"), help="report folder (default demo_report/)")
    parser.add_argument("--cache", type=Path, default=Path("cache"), help="where the generated drive is kept (default cache/)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="playback speed (default 1: real time; the node on an idle 2-core CPU keeps up)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the drive (default 10)")
    parser.add_argument("--regenerate", action="store_true", help="generate the drive again instead of reusing the cached one")
    parser.add_argument("--docs", type=Path, metavar="DIR", help="also copy the timeline and panels pictures to DIR (README figures)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from modseg_ros.data.playback import PlaybackOptions
    from modseg_ros.demo import DemoDrive, run_demo
    from modseg_ros.eval.summary import print_summary

    PlaybackOptions(rate=args.rate, duration_s=args.seconds).validate()
    drive = replace(DemoDrive(), seconds=args.seconds)
    report, wall_s = run_demo(args.out, args.cache, args.rate, drive, args.regenerate, args.docs)
    print_summary(report, args.out)
    print(f"demo finished in {wall_s:.0f} s")
    return 0
