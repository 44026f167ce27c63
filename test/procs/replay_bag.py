"""Test helper: replays a rosbag2 bag's sensor topics over DDS as recorded (serialized bytes, no
re-encoding), at ``rate`` × speed, publishing /clock from the log time for use_sim_time nodes.

    python replay_bag.py BAG RATE

Sensor topics are published best-effort, like a driver's. (The project's user-facing player is
``modseg play``; this is the few lines a node test needs.)
"""
import sys
import time
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/PointCloud2": PointCloud2, "sensor_msgs/msg/CameraInfo": CameraInfo}
TOPICS = ("/camera/image", "/camera/camera_info", "/depth/image", "/lidar/points", "/events/points")


def main() -> int:
    bag, rate = Path(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("bag_replay")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    clock = node.create_publisher(Clock, "/clock", 10)
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in TOPICS]
        pubs = {c.topic: node.create_publisher(TYPES[c.msgtype], c.topic, qos) for c in connections}
        deadline = time.monotonic() + 30
        while any(p.get_subscription_count() == 0 for p in pubs.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        wall0, log0 = time.monotonic(), None
        for connection, log_ns, raw in reader.messages(connections=connections):
            log0 = log_ns if log0 is None else log0
            while True:  # /clock every 5 ms of bag time until this message is due
                bag_now = log0 + int((time.monotonic() - wall0) * rate * 1e9)
                clock.publish(Clock(clock=Time(sec=bag_now // 10**9, nanosec=bag_now % 10**9)))
                if bag_now >= log_ns:
                    break
                time.sleep(min(0.005, (log_ns - bag_now) / 1e9 / rate))
            pubs[connection.topic].publish(bytes(raw))
            if connection.topic == "/camera/image":
                print(log_ns, flush=True)
    time.sleep(0.3)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
