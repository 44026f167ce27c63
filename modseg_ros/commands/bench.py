"""``modseg bench <target>``: speed figures of one part of the system (the figures go in BENCHMARKS.md).

The targets are the modules listed in ``modseg_ros/bench/__init__.py`` ``TARGETS``.
"""
from __future__ import annotations

import argparse
import importlib

from modseg_ros.bench import TARGETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (module, summary) in TARGETS.items():
        sub = targets.add_parser(name, help=summary, description=summary)
        importlib.import_module(module).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    from modseg_ros.ros.env import use_private_domain

    use_private_domain()  # the node, stream and recorder the benchmarks start see only each other
    return int(importlib.import_module(TARGETS[args.target][0]).run(args) or 0)
