"""``modseg run``: the any2seg node without ROS 2 launch (same parameters as the launch file), optionally
serving its topics to Foxglove over a local WebSocket (``--foxglove``)."""
from __future__ import annotations

import argparse

from modseg_ros.paths import config_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", metavar="FILE", default=str(config_file("any2seg.yaml")),
                        help="node parameter file (default: the installed config/any2seg.yaml)")  # fmt: skip
    parser.add_argument("--foxglove", action="store_true",
                        help="also serve the outputs and the camera over Foxglove's WebSocket protocol (live view without ROS)")  # fmt: skip
    parser.add_argument("--foxglove-port", type=int, default=8765, metavar="N", help="WebSocket port (default 8765; 0: any free port)")
    parser.add_argument("--foxglove-host", default="127.0.0.1", metavar="ADDRESS",
                        help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 serves the network)")  # fmt: skip
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[], metavar="ARG",
                        help="everything after it goes to ROS, e.g. --ros-args -r camera/image:=/front/image "
                             "-p use_sim_time:=true")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from modseg_ros.ros.node import spin

    foxglove = None
    if args.foxglove:
        from modseg_ros.ros.foxglove_live import FoxgloveOptions

        foxglove = FoxgloveOptions(host=args.foxglove_host, port=args.foxglove_port)
    spin(["--ros-args", *args.ros_args] if args.ros_args else [], params_file=args.params, foxglove=foxglove)
    return 0
