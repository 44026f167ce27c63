"""Processes and an output recorder for the node tests (real DDS, no mocks).

The node runs in its own process (``modseg run``), sensor streams come from another
(``python -m modseg_ros.ros.stream``), and ``Outputs`` records what the node publishes inside the test process.
"""
from __future__ import annotations

import json
import signal
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

HERE = Path(__file__).parent
MODSEG = Path(sys.executable).parent / "modseg"


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@dataclass
class Received:
    wall: float  # time.monotonic() at receipt
    msg: object


@dataclass
class Outputs:
    """Everything the node publishes, recorded with the wall time of receipt."""

    namespace: str = ""
    topics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("output_recorder", namespace=self.namespace or None, context=self.context)
        self.lock = threading.Lock()
        self.info_topic = self.node.resolve_topic_name("segmentation/info")
        images = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        reliable = QoSProfile(depth=50)
        for key, msg_type, topic, qos in (
            ("info", SegmentationInfo, "segmentation/info", reliable),
            ("mask", Image, "segmentation/mask", images),
            ("color", Image, "segmentation/color_mask", images),
            ("overlay", Image, "segmentation/overlay", images),
            ("points", PointCloud2, "segmentation/points", images),
            ("health", SensorHealthArray, "sensor_health", reliable),
            ("diagnostics", DiagnosticArray, "/diagnostics", reliable),
        ):
            self.topics[key] = []
            self.node.create_subscription(msg_type, topic, lambda msg, k=key: self._record(k, msg), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

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


class NodeProcess:
    """``modseg run`` in a child process, its log lines collected."""

    def __init__(self, params: Path, ros_args: list[str] = (), run_args: list[str] = ()):
        args = [str(MODSEG), "run", "--params", str(params), *run_args]
        if ros_args:
            args += ["--ros-args", *ros_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, outputs: Outputs, timeout_s: float = 90.0) -> None:
        """Until the node has set up (it logs what it segments) and its outputs reach the recorder."""

        def up() -> bool:
            return self.proc.poll() is not None or (
                any(line.startswith("[INFO]") and "segmenting " in line for line in self.lines)
                and outputs.node.count_publishers(outputs.info_topic) > 0
            )

        ready = outputs.wait_for(up, timeout_s)
        if self.proc.poll() is not None or not ready:
            self.stop()
            raise RuntimeError(f"node did not come up (exit {self.proc.poll()}):\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)
        return self.proc.returncode


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
