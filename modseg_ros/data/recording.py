"""Recordings of a replay (``modseg replay-eval --record``): an MCAP rosbag2 bag holding the inputs
the node received and everything it published, as raw CDR with the message definitions embedded
(``ros2msg`` schemas, the package's own messages included), so Foxglove decodes every topic and
``ros2 bag play`` replays it to RViz.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from modseg_ros.errors import BagError
from modseg_ros.paths import share_dir

PACKAGE_MESSAGES = ("SensorHealth", "SensorHealthArray", "SegmentationInfo")  # dependencies first


@lru_cache(maxsize=1)
def typestore():
    """ROS 2 Kilted's standard types plus modseg_ros's messages (from the package's msg/ files)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for name in PACKAGE_MESSAGES:
        path = share_dir() / "msg" / f"{name}.msg"
        store.register(get_types_from_msg(path.read_text(), f"modseg_ros/msg/{name}"))
    return store


def message_definition(msgtype: str) -> str:
    """The ``ros2msg`` definition text of a type with its dependencies, as MCAP and Foxglove use it."""
    return typestore().generate_msgdef(msgtype, ros_version=2)[0]


class RecordingWriter:
    """Thread-safe MCAP writer of raw CDR messages; connections are made on first use."""

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        if path.exists():
            raise BagError(f"--record {path} already exists (choose a new folder)")
        self.path = path
        try:
            self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
            self._writer.open()
        except (WriterError, OSError) as err:
            raise BagError(f"cannot create the recording {path}: {err}") from None
        self._connections: dict[str, object] = {}
        self._lock = threading.Lock()
        self.count = 0

    def write(self, topic: str, msgtype: str, log_ns: int, raw: bytes, latched: bool = False) -> None:
        from modseg_ros.data.world.bag_writer import _qos

        with self._lock:
            connection = self._connections.get(topic)
            if connection is None:
                connection = self._writer.add_connection(topic, msgtype, typestore=typestore(),
                                                         offered_qos_profiles=[_qos(transient_local=latched)])  # fmt: skip
                self._connections[topic] = connection
            self._writer.write(connection, int(log_ns), bytes(raw))
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._writer.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
