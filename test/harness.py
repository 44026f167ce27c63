"""Processes and an output recorder for the node tests (real DDS, no mocks).

The node runs in its own process (``modseg run``), sensor streams come from another
(``python -m modseg_ros.ros.stream``), and ``Outputs`` records what the node publishes inside the test process.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2

from modseg_ros.msg import SegmentationInfo, SensorHealthArray
from modseg_ros.ros import node_process

HERE = Path(__file__).parent
MODSEG = Path(sys.executable).parent / "modseg"


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


# key: (message type, topic, reliable); images and points best effort, as a viewer takes them
OUTPUTS = {
    "info": (SegmentationInfo, "segmentation/info", True),
    "mask": (Image, "segmentation/mask", False),
    "color": (Image, "segmentation/color_mask", False),
    "overlay": (Image, "segmentation/overlay", False),
    "points": (PointCloud2, "segmentation/points", False),
    "health": (SensorHealthArray, "sensor_health", True),
    "diagnostics": (DiagnosticArray, "/diagnostics", True),
}


@dataclass
class Received:
    wall: float  # time.monotonic() at receipt
    msg: object


@dataclass
class Outputs:
    """Everything the node publishes (or the outputs named in ``only``), recorded with the wall time of receipt."""

    namespace: str = ""
    only: tuple[str, ...] = ()  # keys of OUTPUTS to subscribe to (default all; ``subscribe`` adds one later)
    topics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("output_recorder", namespace=self.namespace or None, context=self.context)
        self.lock = threading.Lock()
        self.info_topic = self.node.resolve_topic_name("segmentation/info")
        for key in self.only or OUTPUTS:
            self.subscribe(key)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def subscribe(self, key: str) -> None:
        msg_type, topic, reliable = OUTPUTS[key]
        qos = QoSProfile(depth=50) if reliable else QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        with self.lock:
            self.topics[key] = []
        self.node.create_subscription(msg_type, topic, lambda msg, k=key: self._record(k, msg), qos)

    def _spin(self) -> None:
        while self._spinning:
            self.executor.spin_once(timeout_sec=0.05)

    def _record(self, key: str, msg) -> None:
        with self.lock:
            self.topics[key].append(Received(time.monotonic(), msg))

    def get(self, key: str) -> list[Received]:
        with self.lock:
            return list(self.topics[key])

    def clear(self) -> None:
        with self.lock:
            for records in self.topics.values():
                records.clear()

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    def pipeline_statuses(self, node_name: str = "any2seg") -> list[tuple[float, object]]:
        out = []
        for r in self.get("diagnostics"):
            for status in r.msg.status:
                if status.name == f"{node_name}: pipeline":
                    out.append((r.wall, status))
        return out

    def pipeline_values(self, node_name: str = "any2seg") -> dict[str, str]:
        """The newest pipeline status's key-values ({} before the first)."""
        statuses = self.pipeline_statuses(node_name)
        return {kv.key: kv.value for kv in statuses[-1][1].values} if statuses else {}

    def sensor_statuses(self, modality: str, node_name: str = "any2seg") -> list[tuple[float, object]]:
        return [(r.wall, s) for r in self.get("diagnostics") for s in r.msg.status if s.name == f"{node_name}: {modality} health"]

    def health_of(self, modality: str) -> list[tuple[float, object]]:
        return [(r.wall, s) for r in self.get("health") for s in r.msg.sensors if s.modality == modality]

    def close(self) -> None:
        self._spinning = False
        self._thread.join(timeout=2)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


class NodeProcess(node_process.NodeProcess):
    """``modseg run`` in a child process (modseg_ros/ros/node_process.py), ready once its outputs reach a recorder."""

    def wait_ready(self, outputs: Outputs, timeout_s: float = 90.0) -> None:
        try:
            super().wait_ready(lambda: outputs.node.count_publishers(outputs.info_topic) > 0, timeout_s)
        except node_process.NodeStartError as err:
            raise RuntimeError(f"{err}\n{self.log()}") from None


def play(scenario: dict, timeout_s: float = 60.0) -> list[dict]:
    """Run the sensor player to completion; returns what it published, in order."""
    result = subprocess.run([sys.executable, "-m", "modseg_ros.ros.stream", json.dumps(scenario)], capture_output=True,
                            text=True, timeout=timeout_s)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"player failed ({result.returncode}):\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def make_world_bag(out: Path, seconds: float, condition: str = "sun", failures: str = "", width: int = 128,
                   height: int = 64, seed: int = 5) -> Path:
    """A drive through the embedded world, written by ``modseg world --format bag``."""
    args = [str(MODSEG), "world", "--out", str(out), "--format", "bag", "--frames", str(int(seconds * 20)),
            "--seed", str(seed), "--conditions", condition, "--width", str(width), "--height", str(height),
            "--lidar-azimuths", "512"]  # fmt: skip
    if failures:
        args += ["--failures", failures]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"modseg world failed:\n{result.stderr}")
    return out


def replay_bag(bag: Path, rate: float, timeout_s: float = 120.0) -> list[int]:
    """Replay a bag's sensor topics with /clock (procs/replay_bag.py); returns the camera log times."""
    result = subprocess.run([sys.executable, str(HERE / "procs" / "replay_bag.py"), str(bag), str(rate)],
                            capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"bag replay failed:\n{result.stderr}")
    return [int(line) for line in result.stdout.split()]


def sky_brightness(overlay: Image, color: Image) -> float:
    """Mean of (overlay - colour mask / 2) over the top centre: the background's share where the
    synthetic street shows sky (bright in a camera image, empty in depth and LiDAR renderings)."""
    h, w = overlay.height, overlay.width
    o = np.frombuffer(overlay.data, np.uint8).reshape(h, w, 3).astype(np.float32)
    c = np.frombuffer(color.data, np.uint8).reshape(h, w, 3).astype(np.float32)
    region = (slice(0, max(1, h // 8)), slice(3 * w // 8, 5 * w // 8))
    return float((o[region] - c[region] * 0.5).mean())
