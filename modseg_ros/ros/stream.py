"""Synthetic sensor streams over DDS, from data/synthetic.py's street: scenarios for the node's
tests and benchmarks (sensors that fall silent, black out, send malformed messages, burst at a multiple
of their rate, run on sim time whose clock jumps back as a looping bag's does).

    python -m modseg_ros.ros.stream '{"duration_s": 5, "silent": {"camera": [[2, 3]]}}'
    python -m modseg_ros.ros.stream @scenario.json

Prints one JSON line per published sensor message, {"m": modality, "stamp": ns, "ok": bool}, so the
caller knows exactly what was sent. Frames are rendered before timing starts (a loop of distinct
frames), so publishing keeps its rate on a busy machine.
"""
from __future__ import annotations

import copy
import json
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import render_events
from modseg_ros.core.types import Modality
from modseg_ros.data.synthetic import SyntheticStreet
from modseg_ros.errors import ConfigError
from modseg_ros.ros import convert

DEFAULT_TOPICS = {"camera": "camera/image", "depth": "depth/image", "lidar": "lidar/points", "events": "events/points"}
MALFORMED_KINDS = ("short_data", "bad_step", "bad_encoding", "empty", "absurd_size", "missing_field",
                   "field_beyond_point_step")  # fmt: skip
# Events as the embedded world's bags carry them: CARLA's packed DVS layout, t = int64 nanoseconds in
# a slot declared FLOAT64 (PointField has no 64-bit integer type).
_EVENT_RECORD = np.dtype({"names": ["x", "y", "t", "polarity"], "formats": ["<u2", "<u2", "<i8", "i1"],
                          "offsets": [0, 2, 4, 12], "itemsize": 13})  # fmt: skip
_EVENT_FIELDS = [PointField(name="x", offset=0, datatype=PointField.UINT16, count=1),
                 PointField(name="y", offset=2, datatype=PointField.UINT16, count=1),
                 PointField(name="t", offset=4, datatype=PointField.FLOAT64, count=1),
                 PointField(name="polarity", offset=12, datatype=PointField.INT8, count=1)]  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    duration_s: float  # stream time to play
    rate_hz: Mapping[str, float] = field(default_factory=lambda: {"camera": 10, "depth": 10, "lidar": 5, "events": 10})
    width: int = 64  # camera grid of the generated frames (the node's rig.camera must match)
    height: int = 32
    silent: Mapping[str, Sequence[Sequence[float]]] = field(default_factory=dict)  # no messages in [start, end) s
    blackout: Mapping[str, Sequence[Sequence[float]]] = field(default_factory=dict)  # black camera frames
    malformed: Sequence[Mapping] = ()  # {"modality", "kind", "at_s"}: a broken message instead of a good one
    bursts: Mapping[str, Sequence[Sequence[float]]] = field(default_factory=dict)  # [start, end, factor]: factor × the rate
    jumps: Sequence[Sequence[float]] = ()  # [at_s, back_s]: stamps (and /clock) jump back by back_s (a bag loop)
    topics: Mapping[str, str] = field(default_factory=dict)  # modality -> topic (default: the node's inputs)
    camera_info_topic: str = "camera/camera_info"
    events_source: str = "points"  # events/points (PointCloud2) or events/image
    qos: str = "best_effort"  # or "reliable"
    sim_time: bool = False  # publish /clock and stamp with it
    sim_rate: float = 1.0  # sim seconds per wall second
    sim_start_s: float = 1000.0
    wait_for: int = 1  # subscribers to wait for on every topic before playing (0: do not wait)
    loop: int = 24  # distinct frames rendered per sensor
    seed: int = 0
    lidar_beams: int = 16  # the synthetic LiDAR's rings and firings per revolution
    lidar_azimuths: int = 512

    @classmethod
    def from_dict(cls, values: Mapping) -> Scenario:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown scenario keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for item in values.get("malformed", ()):
            if item.get("kind") not in MALFORMED_KINDS:
                raise ConfigError(f"unknown malformed kind {item.get('kind')!r} (choose from {', '.join(MALFORMED_KINDS)})")
        return cls(**values)

    def topic(self, modality: str) -> str:
        if modality in self.topics:
            return self.topics[modality]
        return "events/image" if modality == "events" and self.events_source == "image" else DEFAULT_TOPICS[modality]


def _time(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _inside(intervals: Sequence[Sequence[float]], t: float) -> bool:
    return any(a <= t < b for a, b in intervals)


class Frames:
    """A loop of distinct messages per sensor, rendered once from the synthetic street."""

    def __init__(self, scenario: Scenario):
        config = NodeConfig.from_parameters({"rig.camera.width": scenario.width, "rig.camera.height": scenario.height})
        self.rig, self.encoding = config.rig, config.encoding
        self.street = SyntheticStreet(self.rig, seed=scenario.seed, lidar_rings=scenario.lidar_beams,
                                      lidar_azimuths=scenario.lidar_azimuths)  # fmt: skip
        self.scenario = scenario
        self._cache: dict[tuple[str, int], object] = {}

    def message(self, modality: str, k: int, stamp_ns: int):
        period = int(1e9 / self.scenario.rate_hz[modality])
        key = (modality, k % self.scenario.loop)
        if key not in self._cache:
            self._cache[key] = self._render(modality, 1_000_000_000 + key[1] * period, period)
        msg = copy.copy(self._cache[key])
        msg.header = Header(stamp=_time(stamp_ns), frame_id=self.rig.frame_ids[Modality(modality)])
        if modality == "events" and isinstance(msg, PointCloud2):
            records = np.frombuffer(msg.data, np.uint8).copy().view(_EVENT_RECORD)
            records["t"] += stamp_ns  # relative -> absolute nanoseconds
            msg.data = records.view(np.uint8).tobytes()
        return msg

    def camera_info(self, header: Header) -> CameraInfo:
        c = self.rig.camera
        return CameraInfo(header=header, width=c.width, height=c.height, k=[c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0])

    def _render(self, modality: str, t_ns: int, period_ns: int):
        h = Header()
        if modality == "camera":
            return convert.image_msg(self.street.camera(t_ns).image, "rgb8", h)
        if modality == "depth":
            return convert.image_msg(self.street.depth(t_ns).depth_m, "32FC1", h)
        if modality == "lidar":
            cloud = self.street.lidar(t_ns)
            points = np.zeros(len(cloud.points), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
            points["x"], points["y"], points["z"] = cloud.points.T
            points["intensity"], points["ring"] = cloud.intensity, cloud.ring
            return convert.cloud_msg(points, h)
        packet = self.street.events(t_ns, period_ns)
        if self.scenario.events_source == "image":
            return convert.image_msg(render_events(packet, self.encoding), "rgb8", h)
        records = np.zeros(len(packet.x), _EVENT_RECORD)
        records["x"], records["y"], records["polarity"] = packet.x, packet.y, packet.polarity
        records["t"] = packet.t_ns  # relative for now (message() makes it absolute)
        return PointCloud2(header=h, height=1, width=len(records), fields=_EVENT_FIELDS, is_bigendian=False,
                           point_step=_EVENT_RECORD.itemsize, row_step=records.nbytes, is_dense=True,
                           data=records.view(np.uint8).tobytes())  # fmt: skip


def stream_schedule(scenario: Scenario) -> list[tuple[float, str, int]]:
    """(stream time, modality, frame index) of every message: each sensor at its rate, and at
    ``factor`` times its rate inside its bursts (frame indices keep counting, so payloads differ)."""
    schedule = []
    for m, rate in scenario.rate_hz.items():
        times = [k / rate for k in range(int(scenario.duration_s * rate))]
        for start, end, factor in scenario.bursts.get(m, ()):
            times = [t for t in times if not start <= t < end]
            times += [start + j / (rate * factor) for j in range(int((end - start) * rate * factor))]
        schedule += [(t, m, k) for k, t in enumerate(sorted(times))]
    return sorted(schedule)


def flapping(seed: int, modalities: Sequence[str], duration_s: float, up_s=(0.8, 2.0), down_s=(0.5, 1.5)) -> dict[str, list[list[float]]]:
    """Silences for sensors flapping at random (a ``silent`` mapping): each sensor independently up
    for ``up_s`` then down for ``down_s`` seconds (uniform ranges), until a second before the end."""
    rng = random.Random(seed)
    silences = {}
    for modality in modalities:
        t, spans = rng.uniform(*up_s), []
        while t < duration_s - 1.0:
            length = rng.uniform(*down_s)
            spans.append([t, min(t + length, duration_s)])
            t += length + rng.uniform(*up_s)
        silences[modality] = spans
    return silences


def jumped_back(scenario: Scenario, t: float) -> float:
    """Seconds the stamps (and /clock) have jumped back by stream time ``t``."""
    return sum(back for at, back in scenario.jumps if at <= t)


def break_message(msg, modality: str, kind: str):
    """A copy of a good message with one kind of damage."""
    bad = copy.deepcopy(msg)
    if kind == "short_data":
        bad.data = bytes(bad.data)[: len(bad.data) // 2]
    elif kind == "bad_step":
        bad.step = 3
    elif kind == "bad_encoding":
        bad.encoding = "yuv422"
    elif kind == "empty":
        bad.width, bad.height, bad.data = 0, 0, b""
        if isinstance(bad, PointCloud2):
            bad.fields = []
    elif kind == "absurd_size":
        bad.width, bad.height = 1 << 20, 1 << 20
    elif kind == "missing_field":  # z of a LiDAR cloud, polarity of an event packet
        gone = "z" if modality == "lidar" else "polarity"
        bad.fields = [f for f in bad.fields if f.name != gone]
    elif kind == "field_beyond_point_step":
        bad.fields[1].offset = bad.point_step
    return bad


def play(node: Node, scenario: Scenario, report: Callable[[dict], None] = lambda record: None) -> None:
    """Publish the scenario from ``node`` in real time (or sim time, with /clock)."""
    reliability = ReliabilityPolicy.RELIABLE if scenario.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    qos = QoSProfile(depth=5, reliability=reliability)
    frames = Frames(scenario)
    rates = scenario.rate_hz
    publishers = {}
    for m in rates:
        points = m == "lidar" or (m == "events" and scenario.events_source == "points")
        publishers[m] = node.create_publisher(PointCloud2 if points else Image, scenario.topic(m), qos)
    info_publisher = node.create_publisher(CameraInfo, scenario.camera_info_topic, qos) if "camera" in rates else None
    clock = node.create_publisher(Clock, "/clock", 10) if scenario.sim_time else None
    for m in rates:  # render before timing starts
        for k in range(scenario.loop):
            frames.message(m, k, 0)
    deadline = time.monotonic() + 30.0
    while any(p.get_subscription_count() < scenario.wait_for for p in publishers.values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no subscriber on {', '.join(p.topic_name for p in publishers.values())} within 30 s")
        time.sleep(0.05)
    time.sleep(0.5)  # let every reader of the subscriber match

    schedule = stream_schedule(scenario)
    broken = sorted(scenario.malformed, key=lambda b: b["at_s"])
    sim_start = int(scenario.sim_start_s * 1e9)
    wall_start = time.monotonic()
    ros_start = node.get_clock().now().nanoseconds
    next_clock = 0.0
    for t_rel, m, k in schedule:
        while True:  # wait for t_rel of stream time, publishing /clock meanwhile
            elapsed = (time.monotonic() - wall_start) * scenario.sim_rate
            if clock is not None and elapsed >= next_clock:
                clock.publish(Clock(clock=_time(sim_start + int((elapsed - jumped_back(scenario, elapsed)) * 1e9))))
                next_clock = elapsed + 0.01
            if elapsed >= t_rel:
                break
            time.sleep(min(0.005, (t_rel - elapsed) / scenario.sim_rate))
        if _inside(scenario.silent.get(m, ()), t_rel):
            continue
        stamp = (sim_start if scenario.sim_time else ros_start) + int((t_rel - jumped_back(scenario, t_rel)) * 1e9)
        msg = frames.message(m, k, stamp)
        ok = True
        if broken and broken[0]["modality"] == m and broken[0]["at_s"] <= t_rel:
            msg, ok = break_message(msg, m, broken.pop(0)["kind"]), False
        elif _inside(scenario.blackout.get(m, ()), t_rel):
            msg.data = bytes(len(msg.data))
        publishers[m].publish(msg)
        if m == "camera" and info_publisher is not None:
            info_publisher.publish(frames.camera_info(msg.header))
        report({"m": m, "stamp": stamp, "ok": ok})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m modseg_ros.ros.stream '<scenario JSON>' | @scenario.json", file=sys.stderr)
        return 2
    text = Path(args[0][1:]).read_text() if args[0].startswith("@") else args[0]  # @FILE: a long scenario
    scenario = Scenario.from_dict(json.loads(text))
    rclpy.init()
    node = rclpy.create_node("sensor_stream")
    try:
        play(node, scenario, lambda record: print(json.dumps(record), flush=True))
        time.sleep(0.3)  # let the last messages leave
    except TimeoutError as err:
        print(f"sensor_stream: {err}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
