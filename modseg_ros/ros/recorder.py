"""Records topics as raw CDR bytes with their receipt times (the replay evaluation's ears).

Subscriptions are ``raw=True``: a callback only stores the bytes, so recording never slows the
executor with decoding, and what is kept is exactly what went over the wire, ready to be decoded
later (``decode``) or written to a rosbag2 file as is (type name + CDR + log time).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from modseg_ros.ros.player import message_class

# Outputs are published RELIABLE with a small depth; a deep reliable reader loses nothing.
RECORD_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


@dataclass(frozen=True)
class Recorded:
    topic: str
    msgtype: str  # e.g. sensor_msgs/msg/Image
    log_ns: int  # the recording node's clock at receipt (sim time when it uses it)
    wall: float  # time.monotonic() at receipt
    raw: bytes


class TopicRecorder:
    def __init__(self, node: Node, topics: Mapping[str, str], qos: QoSProfile = RECORD_QOS) -> None:
        """``topics``: name (relative names resolve in the node's namespace) -> message type."""
        self.node = node
        self._lock = threading.Lock()
        self._records: dict[str, list[Recorded]] = {}
        self._types: dict[str, type] = {}
        self.subscriptions = {}
        for topic, msgtype in topics.items():
            cls = message_class(msgtype)
            if cls is None:
                raise ValueError(f"cannot record {topic}: message type {msgtype} is not importable")
            self._types[msgtype] = cls
            self._records[topic] = []
            self.subscriptions[topic] = node.create_subscription(
                cls, topic, lambda raw, t=topic, m=msgtype: self._store(t, m, raw), qos, raw=True
            )

    def _store(self, topic: str, msgtype: str, raw: bytes) -> None:
        record = Recorded(topic, msgtype, self.node.get_clock().now().nanoseconds, time.monotonic(), bytes(raw))
        with self._lock:
            self._records[topic].append(record)

    def messages(self, topic: str) -> list[Recorded]:
        with self._lock:
            return list(self._records[topic])

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self._records[topic])

    def publishers_matched(self) -> bool:
        """Every recorded topic has a publisher."""
        return all(sub.get_publisher_count() > 0 for sub in self.subscriptions.values())

    def decode(self, record: Recorded):
        return deserialize_message(record.raw, self._types[record.msgtype])
