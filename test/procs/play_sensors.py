"""Publisher process for the node tests: plays a scenario of synthetic sensor streams over DDS.

    python play_sensors.py '<scenario JSON>'

Scenario keys (all optional except duration_s):
  duration_s            seconds of stream time to play
  rate_hz               {modality: Hz}; modalities absent here are not published
  width, height         camera grid of the generated frames (default 64×32, as test/params/node_test.yaml)
  silent                {modality: [[start_s, end_s], ...]}: no messages in these intervals
  blackout              {modality: [[start_s, end_s], ...]}: camera frames all black
  malformed             [{"modality": m, "kind": k, "at_s": t}, ...]: one bad message instead of the good one
  topics                {modality: topic name} (default: the node's input names)
  events_source         "points" (PointCloud2) or "image"
  qos                   "best_effort" (default) or "reliable"
  sim_time              publish /clock (starting at sim_start_s) and stamp with it
  sim_rate              sim seconds per wall second (default 1)
  wait_for              subscriber count to wait for on every topic before playing (default 1)

Prints one JSON line per published sensor message to stdout: {"m": modality, "stamp": ns, "ok": bool}.
"""
import copy
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import render_events
from modseg_ros.core.synthetic import SyntheticStreet
from modseg_ros.core.types import Modality
from modseg_ros.ros import convert

DEFAULT_TOPICS = {"camera": "camera/image", "depth": "depth/image", "lidar": "lidar/points", "events": "events/points"}


def inside(intervals, t):
    return any(a <= t < b for a, b in intervals)


def time_msg(ns):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


class Frames:
    """Messages of a loop of distinct synthetic frames, rendered once."""

    def __init__(self, scenario):
        width, height = scenario.get("width", 64), scenario.get("height", 32)
        config = NodeConfig.from_parameters({"rig.camera.width": width, "rig.camera.height": height})
        self.street = SyntheticStreet(config.rig, seed=scenario.get("seed", 0))
        self.rig = config.rig
        self.events_source = scenario.get("events_source", "points")
        self.loop = 24
        self.cache = {}

    def message(self, modality, k, stamp_ns, period_ns):
        key = (modality, k % self.loop)
        if key not in self.cache:
            t = 10**9 + key[1] * period_ns
            self.cache[key] = self._render(modality, t, period_ns)
        msg = self.cache[key]
        msg.header = Header(stamp=time_msg(stamp_ns), frame_id=modality)
        if modality == "events" and self.events_source == "points":
            msg = self._events_at(msg, stamp_ns)
        return msg

    def _render(self, modality, t, period_ns):
        h = Header()
        if modality == "camera":
            return convert.image_msg(self.street.camera(t).image, "rgb8", h)
        if modality == "depth":
            return convert.image_msg(self.street.depth(t).depth_m, "32FC1", h)
        if modality == "lidar":
            cloud = self.street.lidar(t)
            points = np.zeros(len(cloud.points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
            points["x"], points["y"], points["z"] = cloud.points.T
            points["intensity"], points["ring"] = cloud.intensity, cloud.ring
            return convert.cloud_msg(points, h)
        packet = self.street.events(t, period_ns)
        if self.events_source == "image":
            return convert.image_msg(render_events(packet, NodeConfig.from_parameters({}).encoding), "rgb8", h)
        points = np.zeros(len(packet.x), dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<f8"), ("polarity", "i1")])
        points["x"], points["y"], points["polarity"] = packet.x, packet.y, packet.polarity
        points["t"] = packet.t_ns.astype(np.float64)  # relative for now; made absolute per message
        return convert.cloud_msg(points, h)

    def _events_at(self, template, stamp_ns):
        raw = np.frombuffer(template.data, np.uint8).copy()
        points = raw.view(np.dtype({"names": ["x", "y", "t", "polarity"], "formats": ["<u2", "<u2", "<f8", "i1"],
                                    "offsets": [0, 2, 4, 12], "itemsize": template.point_step}))  # fmt: skip
        points["t"] = (points["t"] + stamp_ns) / 1e9  # absolute seconds
        msg = PointCloud2(header=template.header, height=1, width=template.width, fields=template.fields,
                          is_bigendian=False, point_step=template.point_step, row_step=template.row_step, is_dense=True)  # fmt: skip
        msg.data = raw.tobytes()
        return msg


def malformed(modality, kind, good):
    """A broken copy of a good message, one kind of damage each."""
    if kind == "short_data":
        good.data = bytes(good.data)[: len(good.data) // 2]
    elif kind == "bad_step":
        good.step = 3
    elif kind == "bad_encoding":
        good.encoding = "yuv422"
    elif kind == "empty":
        good.width, good.height, good.data = 0, 0, b""
        if isinstance(good, PointCloud2):
            good.fields = []
    elif kind == "absurd_size":
        good.width, good.height = 1 << 20, 1 << 20
    elif kind == "nan_depth":
        good.data = np.full(len(good.data) // 4, np.nan, np.float32).tobytes()
    elif kind == "missing_field":  # z of a LiDAR cloud, polarity of an event packet
        gone = "z" if modality == "lidar" else "polarity"
        good.fields = [f for f in good.fields if f.name != gone]
    elif kind == "field_beyond_point_step":
        good.fields[1].offset = good.point_step
    else:
        raise ValueError(kind)
    return good


def main() -> int:
    scenario = json.loads(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("sensor_player")
    reliability = ReliabilityPolicy.RELIABLE if scenario.get("qos") == "reliable" else ReliabilityPolicy.BEST_EFFORT
    qos = QoSProfile(depth=5, reliability=reliability)
    topics = {**DEFAULT_TOPICS, **scenario.get("topics", {})}
    if scenario.get("events_source") == "image" and "events" not in scenario.get("topics", {}):
        topics["events"] = "events/image"
    rates = scenario.get("rate_hz", {"camera": 10, "depth": 10, "lidar": 5, "events": 10})
    frames = Frames(scenario)
    pubs = {}
    for m in rates:
        msg_type = PointCloud2 if m == "lidar" or (m == "events" and frames.events_source == "points") else Image
        pubs[m] = node.create_publisher(msg_type, topics[m], qos)
    info_pub = node.create_publisher(CameraInfo, scenario.get("camera_info_topic", "camera/camera_info"), qos) if "camera" in rates else None
    clock_pub = node.create_publisher(Clock, "/clock", 10) if scenario.get("sim_time") else None
    # render the loop before timing starts
    periods = {m: int(1e9 / r) for m, r in rates.items()}
    for m in rates:
        for k in range(frames.loop):
            frames.message(m, k, 0, periods[m])
    wanted = scenario.get("wait_for", 1)
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() < wanted for p in pubs.values()):
        if time.monotonic() > deadline:
            print("no subscriber", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(0.5)

    sim = scenario.get("sim_time", False)
    sim_rate = scenario.get("sim_rate", 1.0)
    sim_start = int(scenario.get("sim_start_s", 1000.0) * 1e9)
    wall_start = time.monotonic()
    ros_start = node.get_clock().now().nanoseconds
    silent, blackout = scenario.get("silent", {}), scenario.get("blackout", {})
    bad = sorted(scenario.get("malformed", []), key=lambda b: b["at_s"])
    schedule = []
    for m, rate in rates.items():
        for k in range(int(scenario["duration_s"] * rate)):
            schedule.append((k / rate, m, k))
    schedule.sort()
    next_clock = 0.0
    for t_rel, m, k in schedule:
        while True:  # sleep until t_rel (stream time), publishing /clock meanwhile
            elapsed = (time.monotonic() - wall_start) * sim_rate
            if clock_pub and elapsed >= next_clock:
                clock_pub.publish(Clock(clock=time_msg(sim_start + int(elapsed * 1e9))))
                next_clock = elapsed + 0.01
            if elapsed >= t_rel:
                break
            time.sleep(min(0.005, (t_rel - elapsed) / sim_rate))
        if inside(silent.get(m, []), t_rel):
            continue
        stamp = sim_start + int(t_rel * 1e9) if sim else ros_start + int(t_rel * 1e9)
        msg = frames.message(m, k, stamp, periods[m])
        ok = True
        if bad and bad[0]["modality"] == m and bad[0]["at_s"] <= t_rel:
            msg = malformed(m, bad.pop(0)["kind"], copy.deepcopy(msg))
            ok = False
        elif m == "camera" and inside(blackout.get(m, []), t_rel):
            msg = copy.deepcopy(msg)
            msg.data = bytes(len(msg.data))
        pubs[m].publish(msg)
        if m == "camera" and info_pub is not None:
            info = CameraInfo(header=msg.header, width=frames.rig.camera.width, height=frames.rig.camera.height)
            c = frames.rig.camera
            info.k = [c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0]
            info_pub.publish(info)
        print(json.dumps({"m": m, "stamp": stamp, "ok": ok}), flush=True)
    time.sleep(0.3)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
