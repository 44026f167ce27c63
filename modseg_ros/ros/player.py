"""``modseg play``: publishes a rosbag2 bag over ROS 2, a thin rclpy shell around data/playback.py.

Messages go out as the recorded CDR bytes (``Publisher.publish`` takes serialized bytes), so a
message is never decoded unless a failure changes it. A topic whose type rclpy cannot import here
(``tf2_msgs`` has no wheel, or a custom package that is not installed) is skipped with one warning.

    modseg play BAG [--topics T ...] [--rate R] [--loop] [--start S] [--duration D] [--clock [HZ]]
                    [--fail camera:blackout@3-6s,lidar:silent@5-8s]
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import rclpy
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from modseg_ros.data.bags import Bag, Qos, TopicInfo
from modseg_ros.data.playback import CLOCK_TOPIC, NS, Outgoing, PlaybackOptions, PlaybackStats, play, select_topics
from modseg_ros.errors import BagError

FLUSH_S = 0.5  # rmw_fastrtps publishes asynchronously: the last samples need a moment to leave before shutdown
NODE_NAME = "modseg_player"
# rclcpp's ClockQoS: the newest time is all a clock subscriber needs
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def message_class(msgtype: str) -> type | None:
    """The rclpy message class of ``pkg/msg/Name``, or None when it cannot be imported here."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        return None
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError):
        return None


def qos_profile(qos: Qos) -> QoSProfile:
    return QoSProfile(
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.transient_local else DurabilityPolicy.VOLATILE,
    )


@dataclass(frozen=True)
class Skipped:
    topic: str
    msgtype: str

    def __str__(self) -> str:
        return f"skipping {self.topic}: its type {self.msgtype} cannot be imported by rclpy here"


def playable_topics(bag: Bag, requested: Sequence[str]) -> tuple[list[str], list[Skipped]]:
    """The selected topics whose message types rclpy can publish, and the ones skipped."""
    topics, skipped = [], []
    for topic in select_topics(bag, requested):
        if message_class(bag.topics[topic].msgtype) is None:
            skipped.append(Skipped(topic, bag.topics[topic].msgtype))
        else:
            topics.append(topic)
    if not topics:
        raise BagError(f"{bag.path}: none of the selected topics has a type rclpy can publish here")
    return topics, skipped


class BagPublisher:
    """The playback sink: one publisher per topic (QoS from data/bags.py) and /clock."""

    def __init__(self, node: Node, topics: Sequence[TopicInfo], clock: bool,
                 on_publish: Callable[[Outgoing, float], None] | None = None) -> None:  # fmt: skip
        self.node = node
        self.publishers = {
            info.name: node.create_publisher(message_class(info.msgtype), info.name, qos_profile(info.publish_qos))
            for info in topics
        }
        self.clock = node.create_publisher(Clock, CLOCK_TOPIC, CLOCK_QOS) if clock else None
        self.on_publish = on_publish  # (item, wall time) after each publish, for latency measurements

    def publish(self, item: Outgoing) -> None:
        if item.raw is None:
            if self.clock is not None:
                self.clock.publish(Clock(clock=Time(sec=item.bag_ns // NS, nanosec=item.bag_ns % NS)))
            return
        self.publishers[item.topic].publish(item.raw)
        if self.on_publish is not None:
            self.on_publish(item, time.monotonic())

    def wait_for_subscribers(self, topics: Sequence[str], timeout_s: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """Wait until each of ``topics`` (and /clock, when published) has a subscriber, or ``alive()`` turns False."""
        publishers = [self.publishers[t] for t in topics if t in self.publishers] + ([self.clock] if self.clock else [])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive():
            if all(p.get_subscription_count() > 0 for p in publishers):
                return True
            time.sleep(0.05)
        return False


def run(bag_path: str, options: PlaybackOptions, warn: Callable[[str], None] = print, wait_for_subscribers_s: float = 0.0,
        ros_args: Sequence[str] = ()) -> PlaybackStats:  # fmt: skip
    """Play one bag to the end (or until Ctrl-C) in this process's ROS domain, after waiting up to
    ``wait_for_subscribers_s`` for every played topic to have a subscriber."""
    options.validate()
    with Bag(bag_path) as bag:
        topics, skipped = playable_topics(bag, options.topics)
        for item in skipped:
            warn(str(item))
        context = rclpy.Context()
        rclpy.init(args=["--ros-args", *ros_args] if ros_args else None, context=context)
        try:
            node = rclpy.create_node(NODE_NAME, context=context)
            sink = BagPublisher(node, [bag.topics[t] for t in topics], clock=options.clock_hz > 0)
            if wait_for_subscribers_s > 0 and not sink.wait_for_subscribers(topics, wait_for_subscribers_s):
                warn(f"not every topic has a subscriber after {wait_for_subscribers_s:g} s; playing anyway")
            stats = play(bag, topics, options, sink)
            time.sleep(FLUSH_S)
            return stats
        finally:
            rclpy.try_shutdown(context=context)
