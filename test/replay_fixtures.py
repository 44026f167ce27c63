"""Bags and a DDS listener for the player and replay tests (real bags, real DDS)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

from modseg_ros.data.failures import parse_failure_spec
from modseg_ros.data.world.generate import WorldOptions, generate
from modseg_ros.data.world.sensors import LidarModel
from modseg_ros.data.world.simulator import SensorModels
from modseg_ros.ros.recorder import TopicRecorder

HERE = Path(__file__).parent
PARAMS = HERE / "params" / "replay_test.yaml"  # node parameters matching small_world_bag's rig
SMALL = dict(width=64, height=32, models=SensorModels(lidar=LidarModel(beams=16, azimuths=256)), threads=1)


def small_world_bag(out: Path, frames: int = 30, failures: str = "", seed: int = 5, condition: str = "sun") -> Path:
    """A world drive at the node tests' 64×32 grid: 20 Hz camera, depth, events; 10 Hz LiDAR."""
    options = WorldOptions(out=out, format="bag", frames=frames, seed=seed, conditions=(condition,),
                           failures=tuple(parse_failure_spec(failures)), **SMALL)  # fmt: skip
    generate(options)
    return out


def modseg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modseg_ros.cli", *args], capture_output=True, text=True, timeout=timeout)


class Listener:
    """A node in this process recording topics as raw CDR (ros/recorder.py), spinning in a thread."""

    def __init__(self, topics: dict[str, str], best_effort: bool = True) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_listener", context=self.context)
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
        self.recorder = TopicRecorder(self.node, topics, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def settle(self, quiet_s: float = 1.0, timeout_s: float = 15.0) -> None:
        """Wait until no message has arrived for ``quiet_s``: what a finished player sent has been
        delivered (a loaded machine can hold the last ones back for longer than a fixed pause)."""
        deadline = time.monotonic() + timeout_s
        seen, since = self._received(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            time.sleep(0.05)
            if self._received() != seen:
                seen, since = self._received(), time.monotonic()

    def _received(self) -> int:
        return sum(self.recorder.count(topic) for topic in self.recorder.subscriptions)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
