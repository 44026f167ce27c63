"""``modseg calibrate``: thresholds of the model-aware sensor health check for a checkpoint, from
nominal drives, written beside it as ``<checkpoint>.consistency.json`` (the node loads it there)."""
from __future__ import annotations

import argparse
from pathlib import Path

from modseg_ros.eval.calibrate import parse_seeds
from modseg_ros.paths import config_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model .safetensors (with its .json sidecar)")
    parser.add_argument("bags", nargs="*", metavar="BAG",
                        help="nominal bags or folders of bags (default: render one world drive per condition and seed)")  # fmt: skip
    parser.add_argument("--params", type=Path, default=config_file("any2seg.yaml"),
                        help="node parameter file: rig, inputs, synchronizer (default: config/any2seg.yaml)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="calibration file (default: <checkpoint>.consistency.json)")
    parser.add_argument("--cache", type=Path, default=Path("cache/consistency/calibration"),
                        help="where the nominal world drives are rendered and reused (default cache/consistency/calibration)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=100, help="camera frames (20 Hz) per world drive (default 100)")
    parser.add_argument("--seeds", type=parse_seeds, default=(11,), metavar="S[,S...]",
                        help="world seeds of the nominal drives, one town and route each (default 11)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="network threads (default 1: a batch job on a shared machine; the scores do not depend on it)")  # fmt: skip
    parser.add_argument("--smoothing", type=float, default=0.5, metavar="S", help="EMA time constant of the scores (default 0.5 s)")
    parser.add_argument("--warn-margin", type=float, default=3.0,
                        help="warn threshold: this many nominal spreads below the lowest nominal score (default 3)")  # fmt: skip
    parser.add_argument("--dark-below", type=float, default=80.0, metavar="I",
                        help="camera mean intensity (0-255) below which a frame is dark: thresholds per light (default 80)")  # fmt: skip
    parser.add_argument("--exclude-factor", type=float, default=2.0,
                        help="exclusion threshold: this many times as far below the median as the warn one (default 2)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from modseg_ros.core.checks.consistency import CalibrationRule
    from modseg_ros.data.bags import bag_paths
    from modseg_ros.eval.calibrate import NominalDrives, calibrate_checkpoint

    rule = CalibrationRule(smoothing_s=args.smoothing, warn_margin=args.warn_margin, exclude_factor=args.exclude_factor,
                           dark_below=args.dark_below)  # fmt: skip
    drives = NominalDrives(args.cache, frames=args.frames, seeds=args.seeds, params=args.params)
    bags = bag_paths(args.bags) if args.bags else []
    calibration, path = calibrate_checkpoint(args.checkpoint, bags, args.params, drives, rule, args.out, args.threads, progress=print)
    print(f"wrote {path}: {calibration.model}, {calibration.provenance['frames']} nominal frames")
    tables = [("", calibration.thresholds)] + [(f" {light.value}", t) for light, t in calibration.by_light.items()]
    for light, table in tables:
        for subset, per in table.items():
            cells = "  ".join(f"{m.value} median {t.median:.3f} warn<{t.warn_below:.3f} exclude<{t.exclude_below:.3f}"
                              for m, t in per.items())  # fmt: skip
            print(f"  {subset + light:<10} {cells}")
    return 0
