"""``modseg bench <target>``: speed figures of one part of the system (the figures go in BENCHMARKS.md).

Each target is a module in ``modseg_ros/bench/`` with ``add_arguments(parser)`` and ``run(args) -> int``;
register it with one line in ``TARGETS``.
"""
from __future__ import annotations

import argparse
import importlib

# target -> (module, one-line summary)
TARGETS: dict[str, tuple[str, str]] = {
    "node": ("modseg_ros.bench.node", "end-to-end latency over bare model forward, and masks per bundle offered"),
    "sync": ("modseg_ros.bench.sync", "synchronizer throughput (messages/s) on a four-sensor rig's streams"),
    "convert": ("modseg_ros.bench.convert", "message -> numpy conversions against cv_bridge / sensor_msgs_py's approach"),
    "world": ("modseg_ros.bench.world", "frames/s of the embedded world's four-sensor rig, and where the time goes"),
    "model": ("modseg_ros.bench.model", "network speed per number of modalities, torch against ONNX Runtime"),
    "consistency": ("modseg_ros.bench.consistency", "model-aware sensor health: detection per quiet fault, false alarms, mIoU with exclusion"),
    "labels": ("modseg_ros.bench.labels", "labels on the network's input grid against full resolution: mIoU and time"),
    "scale": ("modseg_ros.bench.scale", "latency and memory against LiDAR point count and image size"),
    "soak": ("modseg_ros.bench.soak", "20 000 bundles with flapping sensors through the live node: RSS, queues, drops"),
    "all": ("modseg_ros.bench.all", "every target above, cut to about ten minutes (soak: 2 000 bundles)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (module, summary) in TARGETS.items():
        sub = targets.add_parser(name, help=summary, description=summary)
        importlib.import_module(module).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    from modseg_ros.ros.env import use_private_domain

    use_private_domain()  # the node, stream and recorder the benchmarks start see only each other
    return int(importlib.import_module(TARGETS[args.target][0]).run(args) or 0)
