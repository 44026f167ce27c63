"""``modseg world``: generate a DELIVER-layout dataset or a rosbag2 (MCAP) bag from the embedded world."""
from __future__ import annotations

import argparse
from pathlib import Path

from modseg_ros.data.failures import load_failure_schedule
from modseg_ros.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory (dataset root, or the bag directory)")
    parser.add_argument("--format", default="deliver", help="deliver (DELIVER layout, PNG) or bag (rosbag2 MCAP); default deliver")
    parser.add_argument("--frames", type=int, default=100, help="camera frames to write (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="world seed: towns, weather, actors, noise (default 0)")
    parser.add_argument("--conditions", default="all", help="comma-separated: cloud,fog,night,rain,sun or all (default all; "
                        "a bag takes exactly one)")  # fmt: skip
    parser.add_argument("--failures", default="", metavar="SPEC",
                        help="failure schedule, e.g. 'camera:blackout@3-6s,lidar:silent@5-8s', or a YAML file")
    parser.add_argument("--split", default="train", help="deliver: train, val or test (default train)")
    parser.add_argument("--width", type=int, help="camera width in pixels (default: the rig's, 512)")
    parser.add_argument("--height", type=int, help="camera height in pixels (default: the rig's, 256)")
    parser.add_argument("--sequence-frames", type=int, default=20, help="deliver: frames per sequence (default 20)")
    parser.add_argument("--frame-stride", type=int, default=5, help="deliver: camera periods (50 ms) between saved frames (default 5)")
    parser.add_argument("--corner-fraction", type=float, default=0.35,
                        help="deliver: share of sequences with a DELIVER corner case (default 0.35, as DELIVER)")
    parser.add_argument("--lidar-beams", type=int, default=32, help="LiDAR beams (default 32)")
    parser.add_argument("--lidar-azimuths", type=int, default=1024, help="LiDAR firings per revolution (default 1024)")
    parser.add_argument("--event-subframes", type=int,
                        help="renders per camera period for the event camera (default 1: between consecutive frames, as CARLA's DVS)")
    parser.add_argument("--depth-encoding", default="32FC1", help="bag: 32FC1 (metres) or 16UC1 (millimetres)")
    parser.add_argument("--workers", type=int, default=1, help="deliver: sequences rendered in parallel processes (default 1)")
    parser.add_argument("--threads", type=int, default=0, help="rendering threads per process (default 0 = one per core)")
    parser.add_argument("--params", type=Path, help="parameter file with the sensor rig (default config/any2seg.yaml; "
                        "config/carla.yaml with --topic-preset carla)")  # fmt: skip
    parser.add_argument("--topic-preset", default="world", choices=("world", "carla"),
                        help="bag: world topics and layouts (default), or the carla-ros-bridge's under the --params "
                             "file's topics (CARLA's timing, sim-time stamps)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace existing output of the same split or bag")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from modseg_ros.data.world.conditions import parse_conditions
    from modseg_ros.data.world.generate import WorldOptions, generate
    from modseg_ros.data.world.sensors import EventModel, LidarModel
    from modseg_ros.data.world.simulator import SensorModels

    conditions = parse_conditions(args.conditions)
    if args.format == "bag" and len(conditions) != 1:
        raise ConfigError(f"--conditions: a bag records one condition, got {', '.join(conditions)}")
    if args.lidar_beams < 1 or args.lidar_azimuths < 8:
        raise ConfigError("--lidar-beams must be >= 1 and --lidar-azimuths >= 8")
    events = EventModel() if args.event_subframes is None else replace(EventModel(), subframes=args.event_subframes)
    if events.subframes < 1:
        raise ConfigError("--event-subframes must be at least 1")
    models = SensorModels(lidar=replace(LidarModel(), beams=args.lidar_beams, azimuths=args.lidar_azimuths), events=events)
    options = WorldOptions(
        out=args.out, format=args.format, frames=args.frames, seed=args.seed, conditions=tuple(conditions),
        failures=tuple(load_failure_schedule(args.failures)), split=args.split, width=args.width, height=args.height,
        sequence_frames=args.sequence_frames, frame_stride=args.frame_stride, corner_fraction=args.corner_fraction,
        models=models, depth_encoding=args.depth_encoding, threads=args.threads, workers=args.workers,
        overwrite=args.overwrite, parameters=args.params, topic_preset=args.topic_preset,
    )  # fmt: skip
    options.validate()
    columns = (TextColumn("[bold]world[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(f"{options.format} -> {options.out}", total=options.frames)
        summary = generate(options, lambda n: progress.advance(task, n))
    print(f"wrote {summary.frames} frames ({summary.sequences} sequence(s)) to {options.out}")
    if summary.corner_frames:
        print("corner cases: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.corner_frames.items())))
    return 0
