"""sensor_msgs -> numpy, the project's own (cv_bridge and sensor_msgs_py are not installable here).

The readers need no rclpy: they read any object with the message's fields (duck-typed), so they
take rclpy messages and ``rosbags`` messages alike (the offline replay uses them on bag messages);
the rclpy-specific writers (numpy -> messages) are in ros/convert.py. The readers return views over
the message buffer where the layout allows (the view keeps the message's buffer alive) and give the
same values as the reference implementations:

- ``image_array``: ``cv_bridge.CvBridge().imgmsg_to_cv2(msg, "passthrough")`` — (h, w) for one
  channel, (h, w, c) otherwise, row padding (``step``) cropped, byte order fixed;
- ``camera_frame``: ``imgmsg_to_cv2(msg, "rgb8")`` for rgb8, bgr8, rgba8, bgra8 and mono8;
- ``cloud_array``: ``sensor_msgs_py.point_cloud2.read_points(msg)`` — a structured array with one
  field per PointField (``name_i`` for count > 1), ``point_step`` padding kept as itemsize, byte
  order fixed; in addition, ``row_step`` padding between the rows of organised clouds is honoured.

Anything malformed raises ``ConversionError`` naming the topic and the problem; nothing here trusts
a size field without checking it against the buffer.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.geometry import Intrinsics
from modseg_ros.core.types import (CameraFrame, DepthFrame, EventFrame, EventPacket, EventTime, Modality, Payload, PointCloud,
                                   SensorSample)  # fmt: skip
from modseg_ros.errors import ConversionError

# Beyond these a message is treated as corrupt rather than as data (a 16k × 16k RGB image is 768 MB).
MAX_PIXELS = 16384 * 16384
MAX_POINTS = 1 << 26

_LITTLE_HOST = sys.byteorder == "little"

# encoding -> (dtype, channels), as sensor_msgs/image_encodings.hpp
_IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4), "mono8": ("u1", 1),
    "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4), "mono16": ("u2", 1),
}  # fmt: skip
for _depth, _code in (("8U", "u1"), ("8S", "i1"), ("16U", "u2"), ("16S", "i2"), ("32S", "i4"),
                      ("32F", "f4"), ("64F", "f8")):  # fmt: skip
    for _channels in (1, 2, 3, 4):
        _IMAGE_ENCODINGS[f"{_depth}C{_channels}"] = (_code, _channels)

CAMERA_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")  # metres; millimetres; millimetres

# PointField.datatype -> numpy type (sensor_msgs/PointField INT8 = 1 .. FLOAT64 = 8)
POINT_FIELD_TYPES: dict[int, np.dtype] = {
    1: np.dtype("i1"), 2: np.dtype("u1"), 3: np.dtype("i2"), 4: np.dtype("u2"),
    5: np.dtype("i4"), 6: np.dtype("u4"), 7: np.dtype("f4"), 8: np.dtype("f8"),
}  # fmt: skip
POINT_FIELD_CODES = {dtype: code for code, dtype in POINT_FIELD_TYPES.items()}

# Field names accepted for event packets (the CARLA DVS layout uses "pol").
_EVENT_TIME_FIELDS = ("t", "ts", "timestamp")
_EVENT_POLARITY_FIELDS = ("polarity", "pol", "p")


def stamp_ns(header) -> int:
    """A std_msgs/Header's stamp as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _buffer(msg, topic: str, field: str = "data") -> np.ndarray:
    """The message's byte buffer as a uint8 array, without copying."""
    data = getattr(msg, field)
    if isinstance(data, np.ndarray):  # rosbags messages
        return data.view(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as err:
        raise ConversionError(topic, f"'{field}' is not a byte buffer ({type(data).__name__})") from err


# --- Image -----------------------------------------------------------------------------------------


def image_array(msg, topic: str) -> np.ndarray:
    """``sensor_msgs/Image`` -> (h, w) or (h, w, c) array, as cv_bridge's passthrough, zero-copy
    unless the byte order must be swapped."""
    encoding = str(msg.encoding)
    if encoding not in _IMAGE_ENCODINGS:
        raise ConversionError(topic, f"unsupported image encoding '{encoding}'")
    code, channels = _IMAGE_ENCODINGS[encoding]
    dtype = np.dtype(code).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(topic, f"empty image ({width}×{height})")
    if height * width > MAX_PIXELS:
        raise ConversionError(topic, f"absurd image size {width}×{height}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(topic, f"step {step} is smaller than width × pixel size = {row_bytes} for {encoding}")
    if step % dtype.itemsize:
        raise ConversionError(topic, f"step {step} is not a multiple of the {encoding} element size")
    data = _buffer(msg, topic)
    if len(data) < step * height:
        raise ConversionError(topic, f"data has {len(data)} bytes, step × height needs {step * height}")
    array = np.ndarray(
        shape=(height, width, channels),
        dtype=dtype,
        buffer=data,
        strides=(step, channels * dtype.itemsize, dtype.itemsize),
    )
    if dtype.byteorder not in ("=", "|") and (dtype.byteorder == "<") != _LITTLE_HOST:
        array = array.astype(dtype.newbyteorder("="))
    elif dtype.itemsize > 1:
        array = array.view(dtype.newbyteorder("="))
    return array[..., 0] if channels == 1 else array


def _encoding(msg, topic: str, kind: str, allowed: tuple[str, ...]) -> str:
    encoding = str(msg.encoding)
    if encoding not in allowed:
        raise ConversionError(topic, f"{kind} encoding '{encoding}' is not one of {', '.join(allowed)}")
    return encoding


def camera_frame(msg, topic: str) -> CameraFrame:
    """A camera image as H×W×3 RGB uint8: cv_bridge's conversion to ``rgb8`` (a view for rgb8)."""
    encoding = _encoding(msg, topic, "image", CAMERA_ENCODINGS)
    array = image_array(msg, topic)
    if encoding == "rgb8":
        rgb = array
    elif encoding == "rgba8":
        rgb = array[..., :3]
    elif encoding in ("bgr8", "bgra8"):
        rgb = array[..., 2::-1]
    else:  # mono8: grey replicated, as OpenCV's GRAY2RGB
        rgb = np.repeat(array[..., None], 3, axis=2)
    return CameraFrame(image=rgb)


def depth_frame(msg, topic: str) -> DepthFrame:
    """A depth image as float32 metres, the driver's no-depth markers (0, NaN, ±inf, negative) kept
    as sent: a view for 32FC1. Consumers read validity on the pixels they use (a 1080p image is
    encoded from a sample of 5 % of its pixels; marking the invalid ones over the whole image was
    the conversion's main cost)."""
    encoding = _encoding(msg, topic, "depth", DEPTH_ENCODINGS)
    raw = image_array(msg, topic)
    if encoding == "32FC1":
        return DepthFrame(depth_m=raw)
    return DepthFrame(depth_m=np.multiply(raw, np.float32(0.001), dtype=np.float32))  # millimetres, 0 = no return


def event_frame(msg, topic: str) -> EventFrame:
    """A rendered event image (any camera encoding) as H×W×3 uint8."""
    return EventFrame(image=camera_frame(msg, topic).image)


def camera_intrinsics(msg, topic: str) -> Intrinsics:
    """``sensor_msgs/CameraInfo`` -> pinhole intrinsics (K and the image size)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ConversionError(topic, f"camera_info image size {width}×{height} is empty or absurd")
    if k.size != 9 or not np.isfinite(k).all():
        raise ConversionError(topic, f"camera_info K is not a finite 3×3 matrix: {k.tolist()}")
    if k[0] <= 0 or k[4] <= 0:
        raise ConversionError(topic, f"camera_info K has non-positive focal lengths fx={k[0]}, fy={k[4]}")
    return Intrinsics.from_k(k, width, height)


# --- PointCloud2 -----------------------------------------------------------------------------------


def cloud_dtype(fields: Sequence, point_step: int, topic: str) -> np.dtype:
    """Structured dtype of one point, as sensor_msgs_py's ``dtype_from_fields`` (native order)."""
    names, formats, offsets = [], [], []
    for i, field in enumerate(fields):
        if int(field.datatype) not in POINT_FIELD_TYPES:
            raise ConversionError(topic, f"field '{field.name}' has unknown datatype {field.datatype}")
        item = POINT_FIELD_TYPES[int(field.datatype)]
        count = int(field.count)
        if count < 1:
            raise ConversionError(topic, f"field '{field.name}' has count {count}")
        end = int(field.offset) + count * item.itemsize
        if end > point_step:
            raise ConversionError(topic, f"field '{field.name}' ends at byte {end}, beyond point_step {point_step}")
        name = str(field.name) or f"unnamed_field_{i}"
        for j in range(count):
            sub = f"{name}_{j}" if count > 1 else name
            if sub in names:
                raise ConversionError(topic, f"duplicate field name '{sub}'")
            names.append(sub)
            formats.append(item)
            offsets.append(int(field.offset) + j * item.itemsize)
    if not names:
        raise ConversionError(topic, "point cloud has no fields")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def cloud_array(msg, topic: str) -> np.ndarray:
    """``sensor_msgs/PointCloud2`` -> structured array of shape (height, width), zero-copy unless
    the byte order must be swapped (then one copy, as ``read_points``' byteswap)."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height < 0 or width < 0 or height * width > MAX_POINTS:
        raise ConversionError(topic, f"absurd point cloud size {width}×{height}")
    if point_step <= 0:
        raise ConversionError(topic, f"point_step {point_step} must be positive")
    if height > 1 and row_step < width * point_step:
        raise ConversionError(topic, f"row_step {row_step} is smaller than width × point_step = {width * point_step}")
    row_step = max(row_step, width * point_step)
    dtype = cloud_dtype(msg.fields, point_step, topic)
    data = _buffer(msg, topic)
    needed = row_step * (height - 1) + width * point_step if height else 0
    if len(data) < needed:
        raise ConversionError(topic, f"data has {len(data)} bytes, the {width}×{height} cloud needs {needed}")
    if height * width == 0:
        return np.zeros((height, width), dtype=dtype)
    points = np.ndarray(shape=(height, width), dtype=dtype, buffer=data, strides=(row_step, point_step))
    if bool(msg.is_bigendian) == _LITTLE_HOST:
        points = points.byteswap()  # a contiguous copy, values now in host order
    return points


def _field(points: np.ndarray, names: Sequence[str], topic: str, what: str) -> np.ndarray:
    for name in names:
        if name in points.dtype.names:
            return points[name].reshape(-1)
    raise ConversionError(topic, f"point cloud has no {what} field (looked for {', '.join(names)}; has {', '.join(points.dtype.names)})")


def _xyz_view(points: np.ndarray) -> np.ndarray | None:
    """N×3 float32 view of x, y, z when they are consecutive native float32 fields of an unpadded cloud."""
    fields = points.dtype.fields
    x, y, z = fields["x"], fields["y"], fields["z"]
    consecutive = y[1] == x[1] + 4 and z[1] == x[1] + 8
    native = all(f[0] == np.dtype("=f4") for f in (x, y, z))
    rows_contiguous = points.shape[0] <= 1 or points.strides[0] == points.strides[1] * points.shape[1]
    if not (consecutive and native and rows_contiguous and points.dtype.isnative):
        return None
    n = points.size
    base = points.reshape(-1)
    return np.ndarray(shape=(n, 3), dtype=np.float32, buffer=base, offset=x[1], strides=(points.dtype.itemsize, 4))


def point_cloud(msg, topic: str, intensity_scale: float = 1.0) -> PointCloud:
    """A LiDAR cloud: N×3 float32 points (organised clouds flattened row-major, NaN kept for
    no-returns), intensity divided by ``intensity_scale`` (the encoding clips it to [0, 1]), ring if
    present. Views of the message where the layout allows: x, y, z as consecutive native float32,
    a native float32 intensity with scale 1, a native uint16 ring."""
    points = cloud_array(msg, topic)
    for axis in ("x", "y", "z"):
        if axis not in points.dtype.names:
            raise ConversionError(topic, f"point cloud has no '{axis}' field (has {', '.join(points.dtype.names)})")
    xyz = _xyz_view(points)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and float64 beyond float32 become NaN / inf: no return
        if xyz is None:
            xyz = np.stack([points[a].reshape(-1) for a in ("x", "y", "z")], axis=1).astype(np.float32)
        if "intensity" in points.dtype.names:
            intensity = points["intensity"].reshape(-1)
            if intensity_scale != 1.0 or intensity.dtype != np.dtype("=f4"):
                intensity = intensity.astype(np.float32) / np.float32(intensity_scale)
        else:
            intensity = np.zeros(points.size, dtype=np.float32)
        ring = None
        if "ring" in points.dtype.names:
            ring = points["ring"].reshape(-1)
            ring = ring if ring.dtype == np.dtype("=u2") else ring.astype(np.uint16)
    return PointCloud(points=xyz, intensity=intensity, ring=ring)


def _packed_nanoseconds(t: np.ndarray) -> bool:
    """Does a FLOAT64 field hold int64 nanoseconds in its bytes? Every int64 within ±2^61 ns (±73
    years) reads as a double below 1e-150 in magnitude, or as NaN for negative values (packets
    stamped near zero), and no real time in any unit is that small (but zero, the same either way)."""
    if t.dtype != np.float64 or not len(t):
        return False
    as_int = t.view(np.int64)
    return bool(as_int.min() > -(2**61) and as_int.max() < 2**61)


# With no header stamp to compare with, larger float values are taken as nanoseconds (1e7 s is 116 days).
_NS_WITHOUT_STAMP_ABOVE = 1e7
_INT64_NS = 2**63 - 2**10  # the int64 range, as float64 rounds it


def resolve_event_time(t: np.ndarray, stamp_ns: int) -> EventTime:
    """The ``auto`` rule for a float time field: which convention ``t`` is in.

    1. A FLOAT64 field whose bytes are all int64 within ±2^61 (``_packed_nanoseconds``): int64
       nanoseconds (CARLA's native ROS 2 publisher, the world's bags).
    2. Otherwise the values are real numbers in seconds or in nanoseconds (the carla-ros-bridge packs
       CARLA's int64 ns as a double value). Events lie within a fraction of a second of their
       message's header stamp, so the reading of the median value that lands nearer the stamp wins.
    3. Without a header stamp (0), values above 1e7 are nanoseconds.
    """
    if _packed_nanoseconds(t):
        return EventTime.INT64_NS
    median = float(np.median(t))
    if stamp_ns == 0:
        return EventTime.FLOAT_NS if abs(median) > _NS_WITHOUT_STAMP_ABOVE else EventTime.FLOAT_S
    stamp_s = stamp_ns / 1e9
    return EventTime.FLOAT_NS if abs(median * 1e-9 - stamp_s) < abs(median - stamp_s) else EventTime.FLOAT_S


def event_times_ns(t: np.ndarray, stamp_ns: int, convention: EventTime = EventTime.AUTO) -> np.ndarray:
    """Absolute event times in ns from a PointCloud2 time field (``convention``: see EventTime;
    integer fields always hold nanoseconds), a view of ``t`` where its bytes already are int64 ns.
    ValueError if the field cannot hold the convention or the times are NaN, inf or beyond the int64
    nanosecond range."""
    if t.dtype.kind in "iu":
        return t.astype(np.int64, copy=False)
    if len(t) == 0:
        return np.zeros(0, np.int64)
    if convention is EventTime.AUTO:
        convention = resolve_event_time(t, stamp_ns)
    if convention is EventTime.INT64_NS:
        if t.dtype.itemsize != 8:
            raise ValueError(f"int64 nanoseconds need an 8-byte field, the time field is {t.dtype.name}")
        return t.view(np.int64)
    values = t.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("event times contain NaN or inf")
    unit = 1.0 if convention is EventTime.FLOAT_NS else 1e9
    if np.abs(values).max() >= _INT64_NS / unit:  # (checked before scaling: no overflow warning)
        raise ValueError(f"event times up to {np.abs(values).max():.3g} are beyond the int64 nanosecond range")
    return np.rint(values * unit).astype(np.int64)


def event_packet(msg, topic: str, width: int, height: int, time_convention: EventTime = EventTime.AUTO) -> EventPacket:
    """Events as a PointCloud2 (x, y, t absolute, polarity) -> EventPacket with time relative to the
    header stamp; polarity 0/negative -> -1, positive -> +1. Coordinates must fit uint16 (events
    outside the sensor's grid are kept; the encodings skip them)."""
    points = cloud_array(msg, topic)
    x = _field(points, ("x",), topic, "x")
    y = _field(points, ("y",), topic, "y")
    # one gather of the times out of the records: the passes below (type test, range checks, the
    # subtraction) run 5-10× faster on contiguous values than on a view with a 13-byte stride
    t = np.ascontiguousarray(_field(points, _EVENT_TIME_FIELDS, topic, "time"))
    p = _field(points, _EVENT_POLARITY_FIELDS, topic, "polarity")
    for name, values in (("x", x), ("y", y)):
        if np.can_cast(values.dtype, np.uint16):  # (uint16 on the wire: nothing to check)
            continue
        if values.dtype.kind == "f" and len(values) and not np.isfinite(values).all():
            raise ConversionError(topic, f"event '{name}' coordinates contain NaN or inf")
        if len(values) and (values.min() < 0 or values.max() > 65535):
            raise ConversionError(topic, f"event '{name}' coordinates outside 0..65535 ({values.min():g} to {values.max():g})")
    stamp = stamp_ns(msg.header)
    auto = time_convention is EventTime.AUTO and t.dtype.kind == "f" and len(t) > 0
    convention = resolve_event_time(t, stamp) if auto else time_convention
    try:
        times = event_times_ns(t, stamp, convention)
    except ValueError as err:
        raise ConversionError(topic, f"{err} (inputs.event_time: {time_convention})") from None
    # packed nanoseconds the auto rule recognised lie within ±2^61, a header stamp (int32 seconds)
    # too: their difference fits int64 without a second pass over the times to check it
    bounded = auto and convention is EventTime.INT64_NS
    if len(times) and not bounded and not (-_INT64_NS <= int(times.min()) - stamp and int(times.max()) - stamp <= _INT64_NS):
        raise ConversionError(topic, "event times are too far from the header stamp to be relative nanoseconds")
    relative = times - np.int64(stamp)  # (the packet's own array: the message can go)
    polarity = (p > 0).view(np.int8)  # +1 / -1 (NaN is not positive), in place
    polarity *= 2
    polarity -= 1
    return EventPacket(
        x=x.astype(np.uint16), y=y.astype(np.uint16), t_ns=relative, polarity=polarity, width=width, height=height
    )


# --- The node's inputs ------------------------------------------------------------------------------

IMAGE = "sensor_msgs/msg/Image"
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"


@dataclass(frozen=True)
class SensorInput:
    """One input of the node: its topic (relative name), message type and converter."""

    modality: Modality
    topic: str
    msg_type: str  # "sensor_msgs/msg/Image" or "sensor_msgs/msg/PointCloud2"
    read: Callable[[object, str], Payload]  # (message, resolved topic name) -> payload; ConversionError

    def sample(self, msg, topic: str, now_ns: int) -> SensorSample:
        """The message as a sample received at ``now_ns`` (ConversionError if it is malformed)."""
        return SensorSample(self.modality, stamp_ns(msg.header), now_ns, str(msg.header.frame_id), self.read(msg, topic))


def sensor_inputs(config: NodeConfig) -> dict[Modality, SensorInput]:
    """The inputs the node subscribes to, as its parameters select them (topics, events source and
    time convention, LiDAR intensity scale); shared with the offline replay."""
    events = config.rig.intrinsics_of(Modality.EVENTS)
    inputs = config.inputs
    scale = inputs.lidar_intensity_scale
    readers: dict[Modality, tuple[str, Callable[[object, str], Payload]]] = {
        Modality.CAMERA: (IMAGE, camera_frame),
        Modality.DEPTH: (IMAGE, depth_frame),
        Modality.LIDAR: (POINT_CLOUD, lambda msg, topic: point_cloud(msg, topic, scale)),
        Modality.EVENTS: (
            (POINT_CLOUD, lambda msg, topic: event_packet(msg, topic, events.width, events.height, inputs.event_time))
            if inputs.events_source == "points" else (IMAGE, event_frame)
        ),
    }  # fmt: skip
    return {m: SensorInput(m, config.topics.sensor(m, inputs.events_source), *readers[m]) for m in inputs.modalities}
