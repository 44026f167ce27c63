"""``modseg info``: what is installed where, and the DDS environment the project's commands use."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from modseg_ros.paths import share_dir
from modseg_ros.ros.env import DISCOVERY_RANGE, DOMAIN_ID, PROFILES_FILE

_PACKAGES = ("rclpy", "torch", "onnxruntime", "numpy", "rosbags", "open3d", "safetensors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", action="store_true", help="also check that the messages import")


def _version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        return f"not importable ({err})"
    return getattr(module, "__version__", "installed")


def run(args: argparse.Namespace) -> int:
    print(f"python       {sys.version.split()[0]} ({sys.executable})")
    print(f"share dir    {share_dir()}")
    for name in _PACKAGES:
        print(f"{name:<12} {_version(name)}")
    for key in (DISCOVERY_RANGE, PROFILES_FILE, DOMAIN_ID):
        print(f"{key} = {os.environ.get(key, '(unset)')}")
    if args.messages:
        from modseg_ros.msg import SegmentationInfo, SensorHealth, SensorHealthArray

        for msg_type in (SegmentationInfo, SensorHealth, SensorHealthArray):
            print(f"message      {msg_type.__module__}.{msg_type.__name__}: ok")
    return 0
