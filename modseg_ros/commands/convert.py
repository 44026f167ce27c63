"""``modseg convert``: bring other people's data to the node. ``deliver2bag``: DELIVER frames with
their ground truth -> a timed rosbag2 bag (MCAP) for the live node and ``modseg replay-eval``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="conversion", required=True, metavar="CONVERSION")
    deliver = sub.add_parser("deliver2bag", help="DELIVER-layout frames (real DELIVER or modseg world) -> rosbag2 (MCAP)",
                             description="DELIVER-layout frames with ground truth -> a timed rosbag2 bag (MCAP) with "
                                         "the world's topics, and the node parameters that read it (BAG/any2seg.yaml)")  # fmt: skip
    deliver.add_argument("root", type=Path, metavar="DELIVER_ROOT", help="folder with img/, depth/, lidar/, event/, semantic/")
    deliver.add_argument("--out", required=True, type=Path, metavar="BAG", help="bag directory to write")
    deliver.add_argument("--split", default="val", help="train, val or test (default val)")
    deliver.add_argument("--condition", default="all", help="cloud, fog, night, rain, sun, comma-separated, or all (default)")
    deliver.add_argument("--case", default="all",
                         help="normal or a corner case (motionblur, overexposure, underexposure, lidarjitter, eventlowres), "
                              "comma-separated, or all (default)")  # fmt: skip
    deliver.add_argument("--rate-hz", type=float, default=20.0, help="frames per second of bag time (default 20)")
    deliver.add_argument("--max-frames", type=int, help="convert at most this many frames (in DELIVER's order)")
    deliver.add_argument("--hfov-deg", type=float, default=90.0,
                         help="camera field of view when the root does not record one (default 90, CARLA's)")  # fmt: skip
    deliver.add_argument("--depth-format", default="auto", help="how depth PNGs code metres: carla (CARLA's raw depth), "
                         "modseg (the world's range code), none, or auto (modseg for modseg world output, else carla)")
    deliver.add_argument("--lidar-format", default="auto", help="how LiDAR PNGs code distance: linear (channel 0 × "
                         "--lidar-range-m / 255), modseg (the world's range code), none, or auto (modseg for modseg world "
                         "output, else linear)")  # fmt: skip
    deliver.add_argument("--lidar-range-m", type=float, default=100.0, help="linear LiDAR PNGs: metres coded 255 (default 100)")
    deliver.add_argument("--params", type=Path, help="parameter file with the sensor rig (default config/any2seg.yaml)")
    deliver.add_argument("--overwrite", action="store_true", help="replace an existing bag")


def _choice(value: str) -> tuple[str, ...] | None:
    return None if value == "all" else tuple(v.strip() for v in value.split(",") if v.strip())


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from modseg_ros.data.deliver_bag import DeliverBagOptions, deliver_to_bag

    options = DeliverBagOptions(
        root=args.root, out=args.out, split=args.split, conditions=_choice(args.condition), cases=_choice(args.case),
        rate_hz=args.rate_hz, hfov_deg=args.hfov_deg, depth_format=args.depth_format, lidar_format=args.lidar_format,
        lidar_range_m=args.lidar_range_m, max_frames=args.max_frames, params=args.params, overwrite=args.overwrite,
    )  # fmt: skip
    columns = (TextColumn("[bold]deliver2bag[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("", total=None)
        summary = deliver_to_bag(options, lambda n: progress.advance(task, n))
    print(f"wrote {summary.frames} frames to {options.out} (depth: {summary.depth_format}, LiDAR: {summary.lidar_format})")
    if summary.missing:
        print("frames without a PNG (the sensor is silent there): " + ", ".join(f"{k} {v}" for k, v in summary.missing.items()))
    print(f"replay it: modseg replay-eval {options.out} --params {summary.node_params} --out REPORT [--offline]")
    return 0
