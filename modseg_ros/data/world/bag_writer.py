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

``BagStyle.carla`` writes the same drive as the carla-ros-bridge (ROS 2) publishes CARLA's sensors,
under the topic names of a parameter file (config/carla.yaml): camera ``bgra8``; depth ``32FC1``;
LiDAR x, y, z, intensity float32 (point_step 16, no ring); DVS events x, y uint16, t FLOAT64
holding the nanoseconds as a double value (the bridge's ``create_cloud`` struct-packs CARLA's int64
``t``), pol int8 0/1 (point_step 13); the bridge's DVS ``image`` (bgr8, 255 in channel ``2 * pol``);
the semantic camera as the parameter file's ``ground_truth`` encoding (the bridge: CityScapes
colours, bgra8); no LiDAR ground truth.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modseg_ros.core.encoding import EncodingConfig, render_events
from modseg_ros.core.geometry import Intrinsics, Rig, Transform
from modseg_ros.core.types import CameraFrame, DepthFrame, EventFrame, EventPacket, Modality, PointCloud
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
# role -> the world's topic (BagStyle.topics maps the same roles)
WORLD_TOPICS = {"camera": "/camera/image", "camera_info": "/camera/camera_info", "depth": "/depth/image",
                "lidar": "/lidar/points", "events": "/events/points", "events_image": "/events/image",
                "labels": "/ground_truth/labels", "lidar_labels": "/ground_truth/lidar_points", "tf_static": "/tf_static",
                "tf": "/tf"}  # fmt: skip
ROLE_TYPES = {role: TOPICS[topic][0] for role, topic in WORLD_TOPICS.items()}
TOPIC_PRESETS = ("world", "carla")


@dataclass(frozen=True)
class BagStyle:
    """What a bag looks like: topic names, the base frame and the message layouts of a preset."""

    preset: str = "world"  # world | carla
    topics: dict[str, str] = field(default_factory=lambda: dict(WORLD_TOPICS))  # role -> topic
    base_frame: str = BASE_FRAME
    labels_encoding: str = "deliver"  # core/carla.py GT_ENCODINGS
    carla_tags: str = "0.9.13"

    @classmethod
    def carla(cls, config) -> BagStyle:
        """The carla-ros-bridge's layouts under the topics of a NodeConfig (config/carla.yaml)."""
        from modseg_ros.core.config import resolved_topic as resolved

        t, gt = config.topics, config.ground_truth
        names = {"camera": t.camera, "camera_info": t.camera_info, "depth": t.depth, "lidar": t.lidar, "events": t.events,
                 "events_image": t.events_image, "labels": gt.topic}  # fmt: skip
        topics = {role: resolved(name) for role, name in names.items()} | {"tf_static": "/tf_static", "tf": "/tf"}
        return cls("carla", topics, str(config.parameters.get("rig.base_frame", BASE_FRAME)), gt.encoding, gt.carla_tags)

    def describe(self) -> dict[str, dict[str, str]]:
        """topic -> {type, content} (the sidecar's table)."""
        if self.preset == "world":
            return {topic: {"type": msgtype, "content": what} for topic, (msgtype, what) in TOPICS.items()}
        content = {"camera": "bgra8 camera image", "camera_info": "camera intrinsics, same stamp as the image",
                   "depth": "32FC1 metres", "lidar": "x, y, z, intensity float32 (point_step 16)",
                   "events": "x, y uint16, t FLOAT64 = ns as a double value, pol int8 (point_step 13)",
                   "events_image": "bgr8, 255 in channel 2 * pol (the bridge's rendering)",
                   "labels": f"semantic camera, {self.labels_encoding} (CARLA {self.carla_tags} tags)",
                   "tf_static": f"{self.base_frame} -> each sensor frame", "tf": f"map -> {self.base_frame}"}  # fmt: skip
        return {topic: {"type": ROLE_TYPES[role], "content": content[role]} for role, topic in self.topics.items()}

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
# The carla-ros-bridge's DVS layout: the same bytes, t written as a double holding nanoseconds, 'pol' 0/1.
BRIDGE_EVENT_FIELDS = (("x", 0, UINT16, "<u2"), ("y", 2, UINT16, "<u2"), ("t", 4, FLOAT64, "<f8"), ("pol", 12, INT8, "<i1"))
BRIDGE_LIDAR_FIELDS = LIDAR_FIELDS[:4]
BRIDGE_LIDAR_STEP = 16
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

    def __init__(self, path: Path, rig: Rig, depth_encoding: str = "32FC1", encoding: EncodingConfig = EncodingConfig(),
                 style: BagStyle = BagStyle()) -> None:  # fmt: skip
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        self.style = style
        self.topics = style.topics
        self.carla = style.preset == "carla"
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
            topic: self._writer.add_connection(topic, ROLE_TYPES[role], typestore=self.msgs.store,
                                               offered_qos_profiles=[_qos(transient_local=role == "tf_static")])
            for role, topic in style.topics.items()
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
        pairs = [(self.style.base_frame, self.frame_ids[m], self.rig.base_from[m]) for m in Modality]
        self._record(log_ns, self.topics["tf_static"], self.msgs.tf(log_ns, pairs))

    def ego_pose(self, log_ns: int, stamp: int, map_from_base: Transform) -> None:
        self._record(log_ns, self.topics["tf"], self.msgs.tf(stamp, [(MAP_FRAME, self.style.base_frame, map_from_base)]))

    def camera(self, log_ns: int, stamp: int, frame: CameraFrame) -> None:
        frame_id = self.frame_ids[Modality.CAMERA]
        image, encoding = (bgra(frame.image), "bgra8") if self.carla else (frame.image, "rgb8")
        self._record(log_ns, self.topics["camera"], self.msgs.image(stamp, frame_id, image, encoding))
        self._record(log_ns, self.topics["camera_info"], self.msgs.camera_info(stamp, frame_id, self.rig.camera))

    def labels(self, log_ns: int, stamp: int, labels: np.ndarray) -> None:
        frame_id = self.frame_ids[Modality.CAMERA]
        if self.style.labels_encoding == "deliver":
            msg = self.msgs.image(stamp, frame_id, labels, "mono8")
        else:  # a CARLA semantic camera as the bridge publishes it (CityScapes) or raw (tag in red)
            from modseg_ros.core.carla import TAG_SETS, cityscapes_from_labels, tags_from_labels

            tag_set = TAG_SETS[self.style.carla_tags]
            if self.style.labels_encoding == "carla_cityscapes":
                rgb = cityscapes_from_labels(labels, tag_set)
            else:
                rgb = np.zeros((*labels.shape, 3), np.uint8)
                rgb[..., 0] = tags_from_labels(labels, tag_set)
            msg = self.msgs.image(stamp, frame_id, bgra(rgb), "bgra8")
        self._record(log_ns, self.topics["labels"], msg)

    def depth(self, log_ns: int, stamp: int, depth: DepthFrame) -> None:
        msg = depth_image(self.msgs, stamp, self.frame_ids[Modality.DEPTH], depth, self.depth_encoding)
        self._record(log_ns, self.topics["depth"], msg)

    def lidar(self, log_ns: int, stamp: int, cloud: PointCloud) -> None:
        frame_id = self.frame_ids[Modality.LIDAR]
        if self.carla:
            columns = {"x": cloud.points[:, 0], "y": cloud.points[:, 1], "z": cloud.points[:, 2], "intensity": cloud.intensity}
            msg = self.msgs.cloud(stamp, frame_id, BRIDGE_LIDAR_FIELDS, BRIDGE_LIDAR_STEP, columns)
        else:
            msg = lidar_cloud(self.msgs, stamp, frame_id, cloud)
        self._record(log_ns, self.topics["lidar"], msg)

    def lidar_labels(self, log_ns: int, stamp: int, points: np.ndarray, labels: np.ndarray) -> None:
        if "lidar_labels" not in self.topics:
            return
        columns = {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2], "label": labels}
        msg = self.msgs.cloud(stamp, self.frame_ids[Modality.LIDAR], LABEL_FIELDS, LABEL_STEP, columns)
        self._record(log_ns, self.topics["lidar_labels"], msg)

    def events(self, log_ns: int, stamp: int, packet: EventPacket) -> None:
        """The packet as a point cloud with absolute times, and its rendered event frame."""
        frame_id = self.frame_ids[Modality.EVENTS]
        nominal = self.rig.intrinsics_of(Modality.EVENTS)
        cloud = event_cloud(self.msgs, stamp, frame_id, packet, (nominal.width, nominal.height), bridge=self.carla)
        self._record(log_ns, self.topics["events"], cloud)
        if self.carla:
            image, encoding = bridge_event_image(packet), "bgr8"
        else:
            image, encoding = render_events(packet, self.encoding), "rgb8"
        self._record(log_ns, self.topics["events_image"], self.msgs.image(stamp, frame_id, image, encoding))


    def event_frame(self, log_ns: int, stamp: int, frame: EventFrame) -> None:
        """A rendered event frame alone (no packet), e.g. a DELIVER event PNG."""
        image = self.msgs.image(stamp, self.frame_ids[Modality.EVENTS], frame.image, "rgb8")
        self._record(log_ns, self.topics["events_image"], image)


def bgra(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 RGB -> H×W×4 BGRA with opaque alpha (CARLA's camera buffers)."""
    out = np.full((*rgb.shape[:2], 4), 255, np.uint8)
    out[..., :3] = rgb[..., ::-1]
    return out


def bridge_event_image(packet: EventPacket) -> np.ndarray:
    """The carla-ros-bridge's DVS image: bgr8, 255 in channel ``2 * pol`` of each event's pixel."""
    image = np.zeros((packet.height, packet.width, 3), np.uint8)
    ok = (packet.x < packet.width) & (packet.y < packet.height)
    image[packet.y[ok], packet.x[ok], (packet.polarity[ok] > 0).astype(np.int64) * 2] = 255
    return image


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


def event_cloud(msgs: Messages, stamp: int, frame_id: str, packet: EventPacket, grid: tuple[int, int], bridge: bool = False):
    """Events with absolute times. A low-resolution packet's pixels map to the centres of their blocks
    on the nominal sensor ``grid`` (width, height), so the topic's coordinates always mean one grid.
    ``bridge``: the carla-ros-bridge's layout (t as a double in ns, 'pol' 0/1) instead of the world's."""
    x, y = packet.x.astype(np.int64), packet.y.astype(np.int64)
    width, height = grid
    if packet.width != width:
        fx, fy = width / packet.width, height / packet.height
        x = np.minimum((x * fx + fx / 2).astype(np.int64), width - 1)
        y = np.minimum((y * fy + fy / 2).astype(np.int64), height - 1)
    t = packet.t_ns + np.int64(stamp)
    if bridge:
        columns = {"x": x.astype(np.uint16), "y": y.astype(np.uint16), "t": t.astype(np.float64), "pol": (packet.polarity > 0)}
        return msgs.cloud(stamp, frame_id, BRIDGE_EVENT_FIELDS, EVENT_STEP, columns)
    columns = {"x": x.astype(np.uint16), "y": y.astype(np.uint16), "t": t, "polarity": packet.polarity}
    return msgs.cloud(stamp, frame_id, EVENT_FIELDS, EVENT_STEP, columns)
