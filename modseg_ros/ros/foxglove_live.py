"""The node's topics served live over Foxglove's WebSocket protocol (``modseg run --foxglove``), for
machines without a ROS desktop: open Foxglove, connect to ``ws://127.0.0.1:8765``.

A relay node in the node's process subscribes to the topics as raw CDR and logs each message on a
``foxglove-sdk`` channel with its ``ros2msg`` schema (the package's own messages included, from
data/recording.py), so Foxglove decodes them as it decodes a ROS 2 bag. Nothing is decoded or
re-encoded here. The server binds to the loopback interface unless told otherwise.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from modseg_ros.data.recording import message_definition
from modseg_ros.errors import ConfigError
from modseg_ros.ros.player import message_class

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# What a viewer wants: the node's outputs and the camera it segments (relative names resolve in the node's namespace).
OUTPUT_TOPICS = {
    "segmentation/mask": "sensor_msgs/msg/Image",
    "segmentation/color_mask": "sensor_msgs/msg/Image",
    "segmentation/overlay": "sensor_msgs/msg/Image",
    "segmentation/points": "sensor_msgs/msg/PointCloud2",
    "segmentation/info": "modseg_ros/msg/SegmentationInfo",
    "sensor_health": "modseg_ros/msg/SensorHealthArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
# Best effort: a slow viewer never holds the node's reliable publishers back.
RELAY_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


@dataclass(frozen=True)
class FoxgloveOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port (FoxgloveRelay.port tells which)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--foxglove-port must be within 0..65535, got {self.port}")


class FoxgloveRelay:
    """Relays ``topics`` (name -> message type) seen by ``node`` to a Foxglove WebSocket server."""

    def __init__(self, node: Node, topics: Mapping[str, str], options: FoxgloveOptions) -> None:
        import foxglove

        options.validate()
        self.node = node
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name=f"modseg_ros {node.get_name()}", host=options.host, port=options.port,
                                                context=self.context)  # fmt: skip
        except Exception as err:  # the SDK raises its own error type when the port is taken
            raise ConfigError(f"--foxglove-port {options.port}: cannot serve on {options.host}: {err}") from None
        self.channels = {}
        self.subscriptions = []
        for topic, msgtype in topics.items():
            cls = message_class(msgtype)
            if cls is None:
                node.get_logger().warning(f"foxglove: {topic} ({msgtype}) is not importable here; not served")
                continue
            name = node.resolve_topic_name(topic)
            schema = foxglove.Schema(name=msgtype, encoding="ros2msg", data=message_definition(msgtype).encode())
            channel = foxglove.Channel(name, schema=schema, message_encoding="cdr", context=self.context)
            self.channels[name] = channel
            self.subscriptions.append(node.create_subscription(cls, name, lambda raw, c=channel: self._relay(c, raw), RELAY_QOS, raw=True))

    @property
    def port(self) -> int:
        return int(self.server.port)

    def _relay(self, channel, raw: bytes) -> None:
        channel.log(bytes(raw), log_time=self.node.get_clock().now().nanoseconds)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.server.stop()
