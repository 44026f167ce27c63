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

Each sensor samples the world on its own clock and stamps with its own clock (drive.py); the bag's
log time is the sampling time plus the sensor's latency, so messages arrive as a car's would. The
failure schedule acts through ``core/failures.FailureInjector`` exactly as the bag player's does.
"""
from __future__ import annotations

import heapq
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modseg_ros.core.encoding import EncodingConfig, render_events
from modseg_ros.core.failures import FailureInjector, format_failure_spec
from modseg_ros.core.geometry import Intrinsics, Transform
from modseg_ros.core.types import DepthFrame, EventPacket, Modality, PointCloud
from modseg_ros.data.world.deliver_writer import dump_yaml
from modseg_ros.data.world.drive import DEFAULT_CLOCKS, NS, SensorClock
from modseg_ros.errors import BagError, ConfigError

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
        sec, nanosec = divmod(int(stamp_ns), NS)
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
    order: int
    topic: str = ""
    data: bytes = b""


def _qos(transient_local: bool):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(sec=0, nsec=0)  # rosbag2's "default" for deadline, lifespan and lease
    durability = QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE
    return Qos(QosHistory.KEEP_LAST, 1 if transient_local else 10, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)  # fmt: skip


@dataclass(frozen=True)
class _Sample:
    time_s: float  # world time the sensor samples
    modality: Modality


def _schedule(clocks: dict[Modality, SensorClock], duration_s: float) -> list[_Sample]:
    samples = [_Sample(float(t), m) for m, clock in clocks.items() for t in clock.sample_times(duration_s)]
    order = list(Modality)
    return sorted(samples, key=lambda s: (s.time_s, order.index(s.modality)))


def generate_bag(options, progress=None):
    """Drive through one town under one condition for ``options.frames`` camera periods."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    from modseg_ros.data.world.conditions import make_condition
    from modseg_ros.data.world.generate import CAMERA_RATE_HZ, Summary, derive_seed, prepare_output, rig_dict
    from modseg_ros.data.world.simulator import Simulator
    from modseg_ros.data.world.town import TownParams, generate_town

    options.validate()
    bag = options.out
    parent = bag.parent if bag.parent != Path("") else Path(".")
    prepare_output(parent, False, [])
    if bag.exists():
        if not options.overwrite:
            raise ConfigError(f"--out {bag} already exists (pass --overwrite to replace it)")
        shutil.rmtree(bag) if bag.is_dir() else bag.unlink()

    rig = options.rig()
    seed = derive_seed(options.seed, 1000, 0)
    duration = options.frames / CAMERA_RATE_HZ
    town = generate_town(seed, TownParams(duration_s=duration + 1.0))
    condition = make_condition(options.conditions[0], np.random.default_rng(seed + 1))
    sim = Simulator(town, condition, rig, options.models, seed=seed, threads=options.threads)
    injector = FailureInjector(options.failures, seed=seed)
    clocks = dict(DEFAULT_CLOCKS)
    stamp_rng = {m: np.random.default_rng([seed, 17, i]) for i, m in enumerate(Modality)}
    msgs = Messages()
    enc = EncodingConfig()
    summary = Summary(sequences=1)
    frame_ids = {m: rig.frame_ids.get(m, m.value) for m in Modality}
    event_grid = (rig.intrinsics_of(Modality.EVENTS).width, rig.intrinsics_of(Modality.EVENTS).height)
    start_ns = options.start_ns

    pending: list[_Pending] = []
    counter = iter(range(1 << 62))

    def emit(log_s: float, topic: str, msg) -> None:
        heapq.heappush(pending, _Pending(start_ns + int(round(log_s * NS)), next(counter), topic, msgs.serialize(msg)))

    def stamp_of(modality: Modality, t: float) -> int:
        return int(clocks[modality].stamps_ns(np.array([t]), start_ns, stamp_rng[modality])[0])

    try:
        writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    except WriterError as err:
        raise BagError(f"--out {bag}: {err}") from None
    with writer:
        connections = {}
        for topic, (msgtype, _) in TOPICS.items():
            qos = _qos(transient_local=topic == "/tf_static")
            connections[topic] = writer.add_connection(topic, msgtype, typestore=msgs.store, offered_qos_profiles=[qos])
        static = [(BASE_FRAME, frame_ids[m], rig.base_from[m]) for m in Modality]
        emit(0.0, "/tf_static", msgs.tf(start_ns, static))
        for sample in _schedule(clocks, duration):
            t, m = sample.time_s, sample.modality
            log_s = t + clocks[m].latency_s
            stamp = stamp_of(m, t)
            if m is Modality.CAMERA:
                shot = sim.camera(t)
                # ground truth follows the camera's stamp (nominal when the camera is silent)
                delivered = injector.process(m, t, stamp, shot.frame)
                gt_stamp = stamp if delivered is None else delivered[0]
                emit(log_s, "/ground_truth/labels", msgs.image(gt_stamp, frame_ids[m], shot.labels, "mono8"))
                emit(t, "/tf", msgs.tf(start_ns + int(round(t * NS)), [(MAP_FRAME, BASE_FRAME, sim.base_pose(t))]))
                if delivered is not None:
                    s, frame = delivered
                    emit(log_s, "/camera/image", msgs.image(s, frame_ids[m], frame.image, "rgb8"))
                    emit(log_s, "/camera/camera_info", msgs.camera_info(s, frame_ids[m], rig.camera))
                summary.class_pixels += np.bincount(np.minimum(shot.labels.ravel(), 25), minlength=26)
                summary.frames += 1
                if progress is not None:
                    progress(1)
            elif m is Modality.DEPTH:
                delivered = injector.process(m, t, stamp, sim.depth(t))
                if delivered is not None:
                    s, depth = delivered
                    emit(log_s, "/depth/image", depth_image(msgs, s, frame_ids[m], depth, options.depth_encoding))
            elif m is Modality.LIDAR:
                scan = sim.lidar(t)
                delivered = injector.process(m, t, stamp, sim.lidar_cloud(scan))
                # labels of the true scan, stamped like the delivered one (or nominally when silent)
                gt_stamp = stamp if delivered is None else delivered[0]
                emit(log_s, "/ground_truth/lidar_points", msgs.cloud(gt_stamp, frame_ids[m], LABEL_FIELDS, LABEL_STEP,
                     {"x": scan.points[:, 0], "y": scan.points[:, 1], "z": scan.points[:, 2], "label": scan.labels}))  # fmt: skip
                if delivered is not None:
                    s, cloud = delivered
                    emit(log_s, "/lidar/points", lidar_cloud(msgs, s, frame_ids[m], cloud))
            else:
                rate = clocks[m].rate_hz
                delivered = injector.process(m, t, stamp, sim.events(t - 1.0 / rate, t))
                if delivered is not None:
                    s, packet = delivered
                    emit(log_s, "/events/points", event_cloud(msgs, s, frame_ids[m], packet, event_grid))
                    emit(log_s, "/events/image", msgs.image(s, frame_ids[m], render_events(packet, enc), "rgb8"))
            while pending and pending[0].log_ns <= start_ns + int(round(t * NS)):
                item = heapq.heappop(pending)
                writer.write(connections[item.topic], item.log_ns, item.data)
        while pending:
            item = heapq.heappop(pending)
            writer.write(connections[item.topic], item.log_ns, item.data)

    sidecar = {
        "generator": "modseg_ros embedded world (modseg world --format bag)",
        "seed": options.seed,
        "town_seed": seed,
        "frames": summary.frames,
        "duration_s": duration,
        "start_ns": start_ns,
        "condition": condition.to_dict(),
        "failures": format_failure_spec(options.failures),
        "failure_schedule": [f.to_dict() for f in options.failures],
        "rig": rig_dict(rig),
        "encoding": enc.to_dict(),
        "sensors": options.models.to_dict(),
        "timing": {m.value: clocks[m].to_dict() for m in Modality},
        "depth_encoding": options.depth_encoding,
        "topics": {topic: {"type": msgtype, "content": what} for topic, (msgtype, what) in TOPICS.items()},
        "class_pixel_share": summary.class_share(),
    }
    (bag / "world.yaml").write_text(dump_yaml(sidecar))
    summary.paths.append(str(bag))
    return summary


# --- payload -> message (also used by the bag player for the messages a failure touches) ------------


def depth_image(msgs: Messages, stamp: int, frame_id: str, depth: DepthFrame, encoding: str):
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth.depth_m), np.rint(depth.depth_m * 1000.0), 0)
        return msgs.image(stamp, frame_id, np.clip(mm, 0, 65535).astype("<u2"), "16UC1")
    return msgs.image(stamp, frame_id, depth.depth_m.astype("<f4"), "32FC1")


def lidar_cloud(msgs: Messages, stamp: int, frame_id: str, cloud: PointCloud):
    """x, y, z, intensity float32 + ring uint16 (zeros when the cloud has no ring)."""
    ring = cloud.ring if cloud.ring is not None else np.zeros(len(cloud.points), np.uint16)
    return msgs.cloud(stamp, frame_id, LIDAR_FIELDS, LIDAR_STEP,
                      {"x": cloud.points[:, 0], "y": cloud.points[:, 1], "z": cloud.points[:, 2],
                       "intensity": cloud.intensity, "ring": ring})  # fmt: skip


def event_cloud(msgs: Messages, stamp: int, frame_id: str, packet: EventPacket, grid: tuple[int, int]):
    """Events with absolute times; a low-resolution packet's pixels map to the centres of their
    blocks on the nominal sensor ``grid`` (width, height), so that the topic's coordinates always
    mean the same grid."""
    x, y = packet.x.astype(np.int64), packet.y.astype(np.int64)
    width, height = grid
    if packet.width != width:
        fx, fy = width / packet.width, height / packet.height
        x = np.minimum((x * fx + fx / 2).astype(np.int64), width - 1)
        y = np.minimum((y * fy + fy / 2).astype(np.int64), height - 1)
    return msgs.cloud(stamp, frame_id, EVENT_FIELDS, EVENT_STEP,
                      {"x": x.astype(np.uint16), "y": y.astype(np.uint16), "t": packet.t_ns + np.int64(stamp),
                       "polarity": packet.polarity})  # fmt: skip
