"""The ``modseg`` command: one thin subcommand per job.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so ``modseg --help`` stays fast (no torch, no
rclpy). The DDS environment (loopback discovery, large-message profile) is filled in before any
subcommand runs, keeping values the user set.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modseg_ros.errors import ModsegError

PROG = "modseg"

# name -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("modseg_ros.commands.demo", "a night drive with failing sensors through the live node: summary and report"),
    "world": ("modseg_ros.commands.world", "generate a DELIVER-layout dataset or a rosbag2 bag from the embedded world"),
    "train": ("modseg_ros.commands.train", "train a segmentation network on DELIVER-layout data"),
    "eval": ("modseg_ros.commands.eval", "evaluate a checkpoint on every modality subset (tables, PNGs)"),
    "compare": ("modseg_ros.commands.compare", "tabulate several eval.json side by side (Markdown)"),
    "export": ("modseg_ros.commands.export", "export a checkpoint to ONNX and check it against torch"),
    "calibrate": ("modseg_ros.commands.calibrate", "calibrate a checkpoint's sensor consistency check on nominal drives"),
    "run": ("modseg_ros.commands.run", "run the any2seg node (parameters as the launch file; --ros-args ...)"),
    "play": ("modseg_ros.commands.play", "publish a rosbag2 bag (MCAP, sqlite3) with /clock and injected failures"),
    "convert": ("modseg_ros.commands.convert", "convert data for the node: deliver2bag (DELIVER frames -> rosbag2)"),
    "replay-eval": ("modseg_ros.commands.replay_eval", "replay bags through the node (live or offline), score them, write a report"),
    "render": ("modseg_ros.commands.render", "render frames of a replay recording (replay-eval --record) to PNG"),
    "bench": ("modseg_ros.commands.bench", "run a benchmark and print its figures (modseg bench --help lists the targets)"),
    "info": ("modseg_ros.commands.info", "show versions, install paths and the DDS environment"),
    "params": ("modseg_ros.commands.params", "list the node's parameters: default, accepted values, meaning (--markdown: a table)"),
}


def _overview() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "commands:\n" + "\n".join(lines) + f"\n\nRun '{PROG} COMMAND --help' for a command's options."


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Any-modal semantic segmentation for ROS 2: camera, depth, LiDAR and events.",
        epilog=_overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modseg-ros-py")
    except PackageNotFoundError:
        return "0.1.0"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv:
        top.print_help(sys.stderr)
        return 2
    if argv[0].startswith("-"):
        top.parse_args(argv[:1])  # --help / --version exit here; anything else is a usage error
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.print_usage(sys.stderr)
        choices = ", ".join(COMMANDS)
        print(f"{PROG}: error: unknown command '{name}' (choose from {choices})", file=sys.stderr)
        return 2

    from modseg_ros.ros.env import apply_dds_environment

    apply_dds_environment()
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except ModsegError as err:
        print(f"{PROG} {name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
