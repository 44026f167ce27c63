"""``modseg run``: the any2seg node without ROS 2 launch (same parameters as the launch file)."""
from __future__ import annotations

import argparse

from modseg_ros.paths import config_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", metavar="FILE", default=str(config_file("any2seg.yaml")),
                        help="node parameter file (default: the installed config/any2seg.yaml)")  # fmt: skip
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[], metavar="ARG",
                        help="everything after it goes to ROS, e.g. --ros-args -r camera/image:=/front/image "
                             "-p use_sim_time:=true")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from modseg_ros.ros.node import spin

    spin(["--ros-args", *args.ros_args] if args.ros_args else [], params_file=args.params)
    return 0
