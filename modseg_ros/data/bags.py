"""Reading rosbag2 bags (MCAP and sqlite3) without ROS, for the player, the offline replay and the
evaluation.

A bag is a directory with ``metadata.yaml`` (what ``ros2 bag record`` and ``modseg world`` write)
or a single ``.mcap`` / ``.db3`` file. Messages come out as raw CDR bytes in log-time order; only
the callers that need a message's content deserialize it (``Bag.deserialize``). A bag written by
the embedded world carries a ``world.yaml`` sidecar (condition, failure schedule, rig, timing),
available as ``Bag.sidecar``.

Every problem reading a bag (missing, truncated, not a bag, corrupt chunk) raises ``BagError``
naming the file.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modseg_ros.errors import BagError

SIDECAR = "world.yaml"
BAG_SUFFIXES = (".mcap", ".db3")


@dataclass(frozen=True)
class Qos:
    """The QoS a topic is (re)published with: the part of a ROS QoS profile that matters here."""

    reliable: bool
    transient_local: bool
    depth: int


# rclpy's qos_profile_sensor_data: BEST_EFFORT, VOLATILE, KEEP_LAST 5 (docs/design.md#qos)
SENSOR_QOS = Qos(reliable=False, transient_local=False, depth=5)
DEFAULT_QOS = Qos(reliable=True, transient_local=False, depth=10)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str  # e.g. sensor_msgs/msg/Image
    count: int
    recorded_qos: Qos | None  # the first offered QoS profile in the bag's metadata, if any

    @property
    def is_sensor_data(self) -> bool:
        """Sensor streams (every sensor_msgs type) are published best-effort, as drivers do."""
        return self.msgtype.startswith("sensor_msgs/")

    @property
    def publish_qos(self) -> Qos:
        """Sensor topics: best effort; others: as recorded, else reliable with depth 10."""
        if self.is_sensor_data:
            return SENSOR_QOS
        return self.recorded_qos or DEFAULT_QOS


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_ns: int  # when the recorder received it (the time the player reproduces)
    raw: bytes  # CDR, with the 4-byte encapsulation header, as rclpy publishes and receives it


def _qos_of(connection) -> Qos | None:
    from rosbags.interfaces import QosDurability, QosReliability

    profiles = getattr(connection.ext, "offered_qos_profiles", None) or []
    if not profiles:
        return None
    p = profiles[0]
    return Qos(reliable=p.reliability != QosReliability.BEST_EFFORT,
               transient_local=p.durability == QosDurability.TRANSIENT_LOCAL,
               depth=int(p.depth) if int(p.depth) > 0 else DEFAULT_QOS.depth)  # fmt: skip


def bag_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Bags named on a command line: each entry is a bag (directory or file) or a folder of bags."""
    found: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if not path.exists():
            raise BagError(f"{path}: no such bag or folder")
        if is_bag(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if is_bag(p)) if path.is_dir() else []
        if not children:
            raise BagError(f"{path}: neither a rosbag2 bag (metadata.yaml, .mcap, .db3) nor a folder of bags")
        found += children
    return found


def is_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix in BAG_SUFFIXES
    return path.is_dir() and ((path / "metadata.yaml").is_file() or any(p.suffix in BAG_SUFFIXES for p in path.iterdir()))


class Bag:
    """An open rosbag2 bag (use as a context manager, or call ``close``)."""

    def __init__(self, path: str | Path) -> None:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag")
        # Bags without embedded definitions (sqlite3 from Humble) fall back to the standard types.
        try:
            self._reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_KILTED))
            self._reader.open()
        except (AnyReaderError, OSError, ValueError, KeyError, yaml.YAMLError) as err:
            raise BagError(f"{self.path}: cannot read the bag ({_describe(err)}); is it truncated or not a rosbag2 bag?") from None
        except Exception as err:  # storage back-ends raise their own types (apsw, lz4, zstd, struct)
            raise BagError(f"{self.path}: cannot read the bag ({type(err).__name__}: {err})") from None
        counts: dict[str, int] = {}
        for c in self._reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + int(c.msgcount)
        self.topics: dict[str, TopicInfo] = {}
        for c in self._reader.connections:
            if c.topic not in self.topics:
                self.topics[c.topic] = TopicInfo(c.topic, c.msgtype, counts[c.topic], _qos_of(c))
        self._connections = {c.topic: [x for x in self._reader.connections if x.topic == c.topic] for c in self._reader.connections}
        self.start_ns = int(self._reader.start_time) if self._reader.message_count else 0
        self.end_ns = int(self._reader.end_time) - 1 if self._reader.message_count else 0  # rosbags: end is exclusive
        self.message_count = int(self._reader.message_count)
        self.sidecar = self._read_sidecar()

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def origin_ns(self) -> int:
        """Time zero of the recording: failure schedules and report times count from here (the world's
        start time when the bag has a sidecar, else the first message's log time)."""
        if self.sidecar and isinstance(self.sidecar.get("start_ns"), int):
            return int(self.sidecar["start_ns"])
        return self.start_ns

    def _read_sidecar(self) -> dict[str, Any] | None:
        folder = self.path if self.path.is_dir() else self.path.parent
        file = folder / SIDECAR
        if not file.is_file():
            return None
        try:
            document = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise BagError(f"{file}: cannot read the world sidecar ({_describe(err)})") from None
        return document if isinstance(document, dict) else None

    def messages(self, topics: Sequence[str] | None = None, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[BagMessage]:  # fmt: skip
        """Messages of ``topics`` (default: all) with ``start_ns <= log time < stop_ns``, in log-time order."""
        names = list(self.topics) if topics is None else list(topics)
        connections = [c for name in names for c in self._connections.get(name, [])]
        if not connections:
            return
        count = 0
        try:
            for connection, log_ns, raw in self._reader.messages(connections=connections, start=start_ns, stop=stop_ns):
                count += 1
                yield BagMessage(connection.topic, connection.msgtype, int(log_ns), bytes(raw))
        except BagError:
            raise
        except Exception as err:  # a corrupt chunk or page half-way through the file
            raise BagError(f"{self.path}: the bag is corrupt after {count} messages ({type(err).__name__}: {err})") from None

    def deserialize(self, message: BagMessage) -> Any:
        """The message as a ``rosbags`` object (fields as the ROS message; arrays as numpy)."""
        try:
            return self._reader.deserialize(message.raw, message.msgtype)
        except Exception as err:
            raise BagError(f"{self.path}: message on {message.topic} at {message.log_ns} ns cannot be decoded "
                           f"as {message.msgtype} ({err})") from None  # fmt: skip

    def serialize(self, msg: Any, msgtype: str) -> bytes:
        return bytes(self._reader.typestore.serialize_cdr(msg, msgtype))

    def types(self) -> Any:
        """The bag's type store (message classes by type name)."""
        return self._reader.typestore

    def close(self) -> None:
        if self._reader.stack:
            self._reader.close()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0] if text else type(err).__name__
