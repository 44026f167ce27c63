"""``modseg render``: frames of a recording (``modseg replay-eval --record``) as PNG pictures, showing
what Foxglove or RViz displays for the same topics: camera, overlay, colour mask, ground truth,
labelled points from above, sensor health and what was fused."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, help="a recording bag (OUT/recording/<bag> of replay-eval --record)")
    parser.add_argument("--out", required=True, type=Path, help="folder for frame_<t>.png")
    parser.add_argument("--frames", type=int, default=3, help="masks to render, spread over the recording (default 3)")
    parser.add_argument("--at", type=float, nargs="+", default=(), metavar="S",
                        help="instead: the masks published nearest to these times (seconds from the recording's start)")
    parser.add_argument("--params", type=Path, help="the node parameters of the replay (camera and ground-truth topics; "
                        "default config/any2seg.yaml)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from modseg_ros.errors import ConfigError
    from modseg_ros.eval.render_recording import render_recording

    if args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    for path in render_recording(args.recording, args.out, args.frames, args.params, args.at):
        print(path)
    return 0
