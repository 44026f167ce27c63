"""Writes a drive through the world as a rosbag2 bag (MCAP, standard message types, via rosbags).

Topics (absolute names; the node subscribes to the relative ones):

====================================  ===============================  ======  ==================
topic                                 type                             rate    frame_id
====================================  ===============================  ======  ==================
/camera/image                         sensor_msgs/Image rgb8           20 Hz   camera_optical
/camera/camera_info                   sensor_msgs/CameraInfo           20 Hz   camera_optical
/depth/image                          sensor_msgs/Image 32FC1 | 16UC1  20 Hz   depth_optical
/lidar/points                         sensor_msgs/PointCloud2          10 Hz   lidar
/events/points                        sensor_msgs/PointCloud2          20 Hz   events_optical
/events/image                         sensor_msgs/Image rgb8           20 Hz   events_optical
/ground_truth/labels                  sensor_msgs/Image mono8          20 Hz   camera_optical
/ground_truth/lidar_points            sensor_msgs/PointCloud2          10 Hz   lidar
/tf_static                            tf2_msgs/TFMessage               once    base_link -> sensors
/tf                                   tf2_msgs/TFMessage               20 Hz   map -> base_link
====================================  ===============================  ======  ==================

``BagRecorder`` turns payloads into these messages and writes them in log-time order; the drive
itself (which sensor samples when, failures, stamps) is ``generate.generate_bag``.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modseg_ros.core.encoding import EncodingConfig, render_events
from modseg_ros.core.geometry import Intrinsics, Rig, Transform
from modseg_ros.core.types import CameraFrame, DepthFrame, EventPacket, Modality, PointCloud
from modseg_ros.errors import BagError

TOPICS: dict[str, tuple[str, str]] = {  # topic -> (message type, what it carries)
    "/camera/image": ("sensor_msgs/msg/Image", "rgb8 camera image"),
    "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", "camera intrinsics, same stamp as the image"),
    "/depth/image": ("sensor_msgs/msg/Image", "depth, 32FC1 metres (NaN invalid) or 16UC1 millimetres (0 invalid)"),
    "/lidar/points": ("sensor_msgs/msg/PointCloud2", "x, y, z, intensity float32 + ring uint16"),
    "/events/points": ("sensor_msgs/msg/PointCloud2", "x, y uint16, t int64 (ns, absolute), polarity int8"),
    "/events/image": ("sensor_msgs/msg/Image", "rgb8 rendered event frame (core/encoding.py render_events)"),
    "/ground_truth/labels": ("sensor_msgs/msg/Image", "mono8 DELIVER ids, 255 = ignore; camera stamp"),
    "/ground_truth/lidar_points": ("sensor_msgs/msg/PointCloud2", "x, y, z float32 + label uint8; LiDAR stamp"),
    "/tf_static": ("tf2_msgs/msg/TFMessage", "base_link -> each sensor frame"),
    "/tf": ("tf2_msgs/msg/TFMessage", "map -> base_link (ground-truth ego pose)"),
}
MAP_FRAME = "map"
BASE_FRAME = "base_link"

# PointCloud2 layouts: (name, offset, sensor_msgs/PointField datatype, numpy type)
FLOAT32, FLOAT64, UINT16, UINT8, INT8 = 7, 8, 4, 2, 1
LIDAR_FIELDS = (("x", 0, FLOAT32, "<f4"), ("y", 4, FLOAT32, "<f4"), ("z", 8, FLOAT32, "<f4"),
                ("intensity", 12, FLOAT32, "<f4"), ("ring", 16, UINT16, "<u2"))  # fmt: skip
LIDAR_STEP = 20
# Events: CARLA's DVS layout (packed, 13 bytes). t holds int64 nanoseconds (absolute, sensor clock);
# PointField has no 64-bit integer type, so its 8-byte slot is declared FLOAT64 as in CARLA: read
# it as '<i8' (the node's converter does).
EVENT_FIELDS = (("x", 0, UINT16, "<u2"), ("y", 2, UINT16, "<u2"), ("t", 4, FLOAT64, "<i8"), ("polarity", 12, INT8, "<i1"))
EVENT_STEP = 13
LABEL_FIELDS = (("x", 0, FLOAT32, "<f4"), ("y", 4, FLOAT32, "<f4"), ("z", 8, FLOAT32, "<f4"), ("label", 12, UINT8, "<u1"))
LABEL_STEP = 16


def cloud_dtype(fields, step: int) -> np.dtype:
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[3] for f in fields],
                     "offsets": [f[1] for f in fields], "itemsize": step})  # fmt: skip


class Messages:
    """Typestore message builders (rosbags, ROS 2 Kilted definitions; standard types only)."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.store = get_typestore(Stores.ROS2_KILTED)
        t = self.store.types
        self.Time, self.Header = t["builtin_interfaces/msg/Time"], t["std_msgs/msg/Header"]
        self.Image, self.CameraInfo = t["sensor_msgs/msg/Image"], t["sensor_msgs/msg/CameraInfo"]
        self.PointCloud2, self.PointField = t["sensor_msgs/msg/PointCloud2"], t["sensor_msgs/msg/PointField"]
        self.RegionOfInterest = t["sensor_msgs/msg/RegionOfInterest"]
        self.TFMessage, self.TransformStamped = t["tf2_msgs/msg/TFMessage"], t["geometry_msgs/msg/TransformStamped"]
        self.GTransform, self.Vector3, self.Quaternion = (t["geometry_msgs/msg/Transform"], t["geometry_msgs/msg/Vector3"],
                                                          t["geometry_msgs/msg/Quaternion"])  # fmt: skip

    def header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self.Header(stamp=self.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def image(self, stamp_ns: int, frame_id: str, array: np.ndarray, encoding: str):
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        step = array.strides[0]
        data = array.view(np.uint8).reshape(-1)
        return self.Image(header=self.header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                          is_bigendian=0, step=step, data=data)  # fmt: skip

    def camera_info(self, stamp_ns: int, frame_id: str, intr: Intrinsics):
        k = np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], np.float64)
        p = np.array([intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0], np.float64)
        roi = self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.CameraInfo(header=self.header(stamp_ns, frame_id), height=intr.height, width=intr.width,
                               distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p,
                               binning_x=0, binning_y=0, roi=roi)  # fmt: skip

    def cloud(self, stamp_ns: int, frame_id: str, fields, step: int, columns: dict[str, np.ndarray]):
        n = len(next(iter(columns.values())))
        records = np.zeros(n, cloud_dtype(fields, step))
        for name, values in columns.items():
            records[name] = values
        pf = [self.PointField(name=name, offset=offset, datatype=dt, count=1) for name, offset, dt, _ in fields]
        return self.PointCloud2(header=self.header(stamp_ns, frame_id), height=1, width=n, fields=pf, is_bigendian=False,
                                point_step=step, row_step=step * n, data=records.view(np.uint8).reshape(-1),
                                is_dense=True)  # fmt: skip

    def tf(self, stamp_ns: int, pairs: list[tuple[str, str, Transform]]):
        transforms = []
        for parent, child, transform in pairs:
            x, y, z = (float(v) for v in transform.translation)
            qx, qy, qz, qw = (float(v) for v in transform.quaternion())
            transforms.append(self.TransformStamped(
                header=self.header(stamp_ns, parent), child_frame_id=child,
                transform=self.GTransform(translation=self.Vector3(x=x, y=y, z=z),
                                          rotation=self.Quaternion(x=qx, y=qy, z=qz, w=qw))))  # fmt: skip
        return self.TFMessage(transforms=transforms)

    def serialize(self, msg) -> bytes:
        return self.store.serialize_cdr(msg, msg.__msgtype__)


@dataclass(order=True)
class _Pending:
    log_ns: int
    order: int  # ties keep the order of recording
    topic: str = field(compare=False)
    data: bytes = field(compare=False)


def _qos(transient_local: bool):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(sec=0, nsec=0)  # rosbag2's "default" for deadline, lifespan and lease
    durability = QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE
    return Qos(QosHistory.KEEP_LAST, 1 if transient_local else 10, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)  # fmt: skip


class BagRecorder:
    """Records the world's messages into a new MCAP bag, in log-time order.

    Messages are recorded with the log time at which they reach the bag (sampling time plus the
    sensor's latency), so they come in out of order; ``flush(until_ns)`` writes those that no later
    sample can precede.
    """

    def __init__(self, path: Path, rig: Rig, depth_encoding: str = "32FC1", encoding: EncodingConfig = EncodingConfig()) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        self.rig = rig
        self.depth_encoding = depth_encoding
        self.encoding = encoding
        self.frame_ids = {m: rig.frame_ids.get(m, m.value) for m in Modality}
        self.msgs = Messages()
        try:
            self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
            self._writer.open()
        except (WriterError, OSError) as err:
            raise BagError(f"cannot create bag {path}: {err}") from None
        self._connections = {
            topic: self._writer.add_connection(topic, msgtype, typestore=self.msgs.store,
                                               offered_qos_profiles=[_qos(transient_local=topic == "/tf_static")])
            for topic, (msgtype, _) in TOPICS.items()
        }  # fmt: skip
        self._pending: list[_Pending] = []
        self._count = 0

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.flush(None)
        self._writer.close()

    def _record(self, log_ns: int, topic: str, msg) -> None:
        self._count += 1
        heapq.heappush(self._pending, _Pending(int(log_ns), self._count, topic, self.msgs.serialize(msg)))

    def flush(self, until_ns: int | None) -> None:
        """Write the recorded messages with log time <= until_ns (all of them for None)."""
        while self._pending and (until_ns is None or self._pending[0].log_ns <= until_ns):
            item = heapq.heappop(self._pending)
            self._writer.write(self._connections[item.topic], item.log_ns, item.data)

    # --- one method per message kind ------------------------------------------------------------

    def tf_static(self, log_ns: int) -> None:
        pairs = [(BASE_FRAME, self.frame_ids[m], self.rig.base_from[m]) for m in Modality]
        self._record(log_ns, "/tf_static", self.msgs.tf(log_ns, pairs))

    def ego_pose(self, log_ns: int, stamp: int, map_from_base: Transform) -> None:
        self._record(log_ns, "/tf", self.msgs.tf(stamp, [(MAP_FRAME, BASE_FRAME, map_from_base)]))

    def camera(self, log_ns: int, stamp: int, frame: CameraFrame) -> None:
        frame_id = self.frame_ids[Modality.CAMERA]
        self._record(log_ns, "/camera/image", self.msgs.image(stamp, frame_id, frame.image, "rgb8"))
        self._record(log_ns, "/camera/camera_info", self.msgs.camera_info(stamp, frame_id, self.rig.camera))

    def labels(self, log_ns: int, stamp: int, labels: np.ndarray) -> None:
        self._record(log_ns, "/ground_truth/labels", self.msgs.image(stamp, self.frame_ids[Modality.CAMERA], labels, "mono8"))

    def depth(self, log_ns: int, stamp: int, depth: DepthFrame) -> None:
        msg = depth_image(self.msgs, stamp, self.frame_ids[Modality.DEPTH], depth, self.depth_encoding)
        self._record(log_ns, "/depth/image", msg)

    def lidar(self, log_ns: int, stamp: int, cloud: PointCloud) -> None:
        self._record(log_ns, "/lidar/points", lidar_cloud(self.msgs, stamp, self.frame_ids[Modality.LIDAR], cloud))

    def lidar_labels(self, log_ns: int, stamp: int, points: np.ndarray, labels: np.ndarray) -> None:
        columns = {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2], "label": labels}
        msg = self.msgs.cloud(stamp, self.frame_ids[Modality.LIDAR], LABEL_FIELDS, LABEL_STEP, columns)
        self._record(log_ns, "/ground_truth/lidar_points", msg)

    def events(self, log_ns: int, stamp: int, packet: EventPacket) -> None:
        """The packet as a point cloud with absolute times, and its rendered event frame."""
        frame_id = self.frame_ids[Modality.EVENTS]
        nominal = self.rig.intrinsics_of(Modality.EVENTS)
        cloud = event_cloud(self.msgs, stamp, frame_id, packet, (nominal.width, nominal.height))
        self._record(log_ns, "/events/points", cloud)
        self._record(log_ns, "/events/image", self.msgs.image(stamp, frame_id, render_events(packet, self.encoding), "rgb8"))


# --- payload -> message builders (the recorder above, and the bag player for messages it rewrites) ---


def depth_image(msgs: Messages, stamp: int, frame_id: str, depth: DepthFrame, encoding: str):
    """32FC1 metres, or 16UC1 millimetres where 0 = invalid, which includes anything beyond 65.535 m."""
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth.depth_m), np.rint(depth.depth_m * 1000.0), 0)
        return msgs.image(stamp, frame_id, np.where(mm <= 65535, mm, 0).astype("<u2"), "16UC1")
    return msgs.image(stamp, frame_id, depth.depth_m.astype("<f4"), "32FC1")


def lidar_cloud(msgs: Messages, stamp: int, frame_id: str, cloud: PointCloud):
    """x, y, z, intensity float32 + ring uint16 (zeros when the cloud has no ring)."""
    ring = cloud.ring if cloud.ring is not None else np.zeros(len(cloud.points), np.uint16)
    columns = {"x": cloud.points[:, 0], "y": cloud.points[:, 1], "z": cloud.points[:, 2], "intensity": cloud.intensity, "ring": ring}
    return msgs.cloud(stamp, frame_id, LIDAR_FIELDS, LIDAR_STEP, columns)


def event_cloud(msgs: Messages, stamp: int, frame_id: str, packet: EventPacket, grid: tuple[int, int]):
    """Events with absolute times. A low-resolution packet's pixels map to the centres of their blocks
    on the nominal sensor ``grid`` (width, height), so the topic's coordinates always mean one grid."""
    x, y = packet.x.astype(np.int64), packet.y.astype(np.int64)
    width, height = grid
    if packet.width != width:
        fx, fy = width / packet.width, height / packet.height
        x = np.minimum((x * fx + fx / 2).astype(np.int64), width - 1)
        y = np.minimum((y * fy + fy / 2).astype(np.int64), height - 1)
    columns = {"x": x.astype(np.uint16), "y": y.astype(np.uint16), "t": packet.t_ns + np.int64(stamp), "polarity": packet.polarity}
    return msgs.cloud(stamp, frame_id, EVENT_FIELDS, EVENT_STEP, columns)
