"""Message <-> numpy conversions against cv_bridge / sensor_msgs_py semantics (docs/design.md#message-conversion), on
hand-built messages: every encoding, row padding, byte order, point_step padding, float64 fields,
organised clouds, and every malformed kind."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from modseg_ros.bench.reference import cv_bridge_imgmsg_to_cv2, read_points
from modseg_ros.core import messages
from modseg_ros.errors import ConversionError
from modseg_ros.ros import convert

RNG = np.random.default_rng(7)
F32, F64, U16, U8, I8, I32, U32 = (PointField.FLOAT32, PointField.FLOAT64, PointField.UINT16, PointField.UINT8,
                                   PointField.INT8, PointField.INT32, PointField.UINT32)  # fmt: skip
_STRUCT = {F32: "f", F64: "d", U16: "H", U8: "B", I8: "b", I32: "i", U32: "I"}


def header(sec=5, nanosec=250_000_000, frame="cam"):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image with ``pad`` bytes after every row, in the given byte order."""
    h, w = pixels.shape[:2]
    order = ">" if bigendian else "<"
    raw = pixels.astype(pixels.dtype.newbyteorder(order)).reshape(h, -1).view(np.uint8)
    rows = np.concatenate([raw, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(header=header(), height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                 step=rows.shape[1], data=rows.tobytes())  # fmt: skip


# --- images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [0, 5, 8])
@pytest.mark.parametrize(
    "encoding,channels,to_rgb",
    [
        ("rgb8", 3, lambda a: a),
        ("bgr8", 3, lambda a: a[..., ::-1]),
        ("rgba8", 4, lambda a: a[..., :3]),
        ("bgra8", 4, lambda a: a[..., 2::-1]),
        ("mono8", 1, lambda a: np.repeat(a[..., None], 3, axis=2)),
    ],
)
def test_camera_encodings_give_cv_bridge_rgb8(encoding, channels, to_rgb, pad):
    shape = (6, 7, channels) if channels > 1 else (6, 7)
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    msg = image(pixels, encoding, pad=pad)
    passthrough = messages.image_array(msg, "camera/image")
    assert np.array_equal(passthrough, pixels)
    if pad % channels == 0:  # cv_bridge sizes rows as step // pixel size: other paddings shear its rows
        assert np.array_equal(passthrough, cv_bridge_imgmsg_to_cv2(msg, "u1", channels))
    rgb = messages.camera_frame(msg, "camera/image").image
    assert rgb.shape == (6, 7, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, to_rgb(pixels))


def test_rgb8_is_a_view_of_the_message_buffer_even_with_row_padding():
    for pad in (0, 3):
        msg = image(RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8), "rgb8", pad=pad)
        rgb = messages.camera_frame(msg, "camera/image").image
        assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 24])
@pytest.mark.parametrize("encoding,dtype", [("16UC1", "u2"), ("32FC1", "f4"), ("mono16", "u2"), ("64FC1", "f8"), ("16SC3", "i2")])
def test_passthrough_of_wide_encodings_matches_cv_bridge(encoding, dtype, pad, bigendian):
    channels = int(encoding[-1]) if "C" in encoding else 1
    shape = (5, 3, channels) if channels > 1 else (5, 3)
    pixels = (RNG.random(shape) * 3000).astype(dtype)
    msg = image(pixels, encoding, pad=pad, bigendian=bigendian)
    out = messages.image_array(msg, "depth/image")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert np.array_equal(out, pixels) and np.array_equal(out, cv_bridge_imgmsg_to_cv2(msg, dtype, channels))


def test_depth_32fc1_metres_with_every_invalid_marker_kept():
    depth = np.array([[1.5, 0.0, np.nan], [np.inf, -2.0, 80.25]], np.float32)
    msg = image(depth, "32FC1")
    out = messages.depth_frame(msg, "depth/image").depth_m
    assert out.dtype == np.float32 and np.array_equal(out, depth, equal_nan=True)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))  # a view: no full-size copy on arrival


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_16uc1_millimetres(encoding, bigendian):
    mm = np.array([[0, 1500, 65535], [1, 250, 0]], np.uint16)
    out = messages.depth_frame(image(mm, encoding, pad=2, bigendian=bigendian), "depth/image").depth_m
    expected = np.array([[0.0, 1.5, 65.535], [0.001, 0.25, 0.0]], np.float32)  # 0: no depth
    assert out.dtype == np.float32 and np.allclose(out, expected, rtol=1e-6)


def test_event_image_and_camera_info():
    pixels = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(messages.event_frame(image(pixels, "bgr8"), "events/image").image, pixels[..., ::-1])
    info = CameraInfo(width=640, height=480, k=[500.0, 0.0, 320.5, 0.0, 510.0, 240.5, 0.0, 0.0, 1.0])
    intr = messages.camera_intrinsics(info, "camera/camera_info")
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (640, 480, 500.0, 510.0, 320.5, 240.5)


def test_rosbags_messages_convert_the_same_as_rclpy_messages():
    store = get_typestore(Stores.ROS2_JAZZY)
    BagImage = store.types["sensor_msgs/msg/Image"]
    BagHeader = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    pixels = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    msg = image(pixels, "bgr8", pad=2)
    bag_msg = BagImage(header=BagHeader(stamp=Time(sec=5, nanosec=250_000_000), frame_id="cam"), height=3, width=4,
                       encoding="bgr8", is_bigendian=0, step=msg.step, data=np.frombuffer(msg.data, np.uint8).copy())  # fmt: skip
    assert np.array_equal(messages.camera_frame(bag_msg, "t").image, messages.camera_frame(msg, "t").image)
    assert messages.stamp_ns(bag_msg.header) == messages.stamp_ns(msg.header) == 5_250_000_000


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "image encoding 'yuv422' is not one of rgb8, bgr8"),
        (lambda m: setattr(m, "encoding", "16UC1"), "image encoding '16UC1' is not one of"),
        (lambda m: setattr(m, "step", 10), "step 10 is smaller than width × pixel size = 18"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "data has 71 bytes, step × height needs 72"),
        (lambda m: setattr(m, "data", b""), "data has 0 bytes"),
        (lambda m: setattr(m, "width", 0), "empty image"),
        (lambda m: (setattr(m, "width", 100_000), setattr(m, "height", 100_000)), "absurd image size"),
    ],
)
def test_malformed_images_raise_a_typed_error_naming_topic_and_problem(mutate, needle):
    msg = image(RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8), "rgb8")
    mutate(msg)
    with pytest.raises(ConversionError, match=needle) as err:
        messages.camera_frame(msg, "front/camera/image")
    assert err.value.topic == "front/camera/image" and str(err.value).startswith("front/camera/image: ")


def test_odd_step_and_bad_camera_info_are_rejected():
    msg = image(np.zeros((2, 2), np.uint16), "16UC1", pad=1)
    with pytest.raises(ConversionError, match="not a multiple"):
        messages.depth_frame(msg, "depth/image")
    info = CameraInfo(width=640, height=480, k=[np.nan, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    with pytest.raises(ConversionError, match="not a finite 3×3"):
        messages.camera_intrinsics(info, "camera/camera_info")


# --- point clouds ------------------------------------------------------------------------------------


def cloud(fields, rows, point_step, height=1, row_pad=0, bigendian=False, dense=False) -> PointCloud2:
    """A PointCloud2 packed with struct from per-point tuples (the ground truth layout)."""
    order = ">" if bigendian else "<"
    width = len(rows) // height
    data = bytearray()
    for r in range(height):
        for values in rows[r * width : (r + 1) * width]:
            point = bytearray(b"\xcd" * point_step)
            for (name, offset, dtype), value in zip(fields, values):
                struct.pack_into(order + _STRUCT[dtype], point, offset, value)
            data += point
        data += b"\xee" * row_pad
    pfs = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    return PointCloud2(header=header(), height=height, width=width, fields=pfs, is_bigendian=bigendian,
                       point_step=point_step, row_step=width * point_step + row_pad, data=bytes(data), is_dense=dense)  # fmt: skip


XYZIR = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32), ("ring", 16, U16)]


def lidar_rows(n, nan_every=0):
    rows = []
    for i in range(n):
        x, y, z = RNG.normal(0, 10, 3)
        if nan_every and i % nan_every == 0:
            x = y = z = float("nan")
        rows.append((x, y, z, float(RNG.random()), i % 16))
    return rows


def test_world_lidar_layout_is_a_zero_copy_view_equal_to_read_points():
    rows = lidar_rows(50, nan_every=7)
    msg = cloud(XYZIR, rows, point_step=18)
    ref = read_points(msg)
    out = messages.cloud_array(msg, "lidar/points")
    assert out.shape == (1, 50) and np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    for name in ref.dtype.names:
        assert np.array_equal(out[name].ravel(), ref[name], equal_nan=True)
    pc = messages.point_cloud(msg, "lidar/points")
    assert np.shares_memory(pc.points, np.frombuffer(msg.data, np.uint8))
    expected = np.array([r[:3] for r in rows], np.float32)
    assert pc.points.dtype == np.float32 and np.array_equal(pc.points, expected, equal_nan=True)
    assert np.allclose(pc.intensity, [r[3] for r in rows]) and list(pc.ring) == [i % 16 for i in range(50)]


@pytest.mark.parametrize("bigendian", [False, True])
def test_padded_point_step_float64_and_byte_order(bigendian):
    fields = [("intensity", 0, U8), ("x", 8, F64), ("y", 16, F64), ("z", 24, F64)]
    rows = [(int(RNG.integers(0, 256)), *RNG.normal(0, 50, 3)) for _ in range(20)]
    msg = cloud(fields, rows, point_step=40, bigendian=bigendian)
    ref = read_points(msg)
    out = messages.cloud_array(msg, "lidar/points")
    for name in ("intensity", "x", "y", "z"):
        assert np.array_equal(out[name].ravel(), ref[name]) and out[name].dtype.isnative
    pc = messages.point_cloud(msg, "lidar/points", intensity_scale=255.0)
    assert np.allclose(pc.points, np.array([r[1:] for r in rows], np.float32))
    assert np.allclose(pc.intensity, [r[0] / 255.0 for r in rows]) and pc.ring is None


def test_organised_cloud_with_row_padding_is_read_row_major():
    rows = lidar_rows(4 * 6)
    msg = cloud(XYZIR, rows, point_step=20, height=4, row_pad=12)
    out = messages.cloud_array(msg, "lidar/points")
    assert out.shape == (4, 6)
    pc = messages.point_cloud(msg, "lidar/points")
    assert np.allclose(pc.points, np.array([r[:3] for r in rows], np.float32))
    # without row padding, read_points' flat view agrees
    plain = cloud(XYZIR, rows, point_step=20, height=4)
    assert np.array_equal(messages.cloud_array(plain, "l").ravel()["x"], read_points(plain)["x"])


def test_multi_count_fields_are_named_as_sensor_msgs_py():
    msg = cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32)], [(1.0, 2.0, 3.0)], point_step=20)
    msg.fields.append(PointField(name="normal", offset=12, datatype=U16, count=3))
    msg.fields.append(PointField(name="", offset=18, datatype=U8, count=1))
    names = messages.cloud_array(msg, "l").dtype.names
    assert names == ("x", "y", "z", "normal_0", "normal_1", "normal_2", "unnamed_field_4")


@pytest.mark.parametrize("step", [13, 16])  # packed (CARLA, the embedded world's bags) and aligned
@pytest.mark.parametrize("stamp", [5_250_000_000, 1_795_315_145_457_680_992])  # sim time, wall-clock epoch
def test_events_in_the_carla_layout(stamp, step):
    t_abs = [stamp - 40_000_000, stamp - 1_000, stamp]
    fields = [("x", 0, U16), ("y", 2, U16), ("t", 4, F64), ("pol", 12, I8)]
    data = b"".join(struct.pack("<HHqb", x, y, t, p) + bytes(step - 13) for (x, y, t, p) in zip([3, 0, 9], [1, 2, 4], t_abs, [1, 0, 1]))
    msg = cloud(fields, [(0, 0, 0.0, 0)] * 3, point_step=step)
    msg.data = data  # CARLA declares t FLOAT64 but writes int64 nanoseconds
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    packet = messages.event_packet(msg, "events/points", width=10, height=5)
    assert list(packet.x) == [3, 0, 9] and list(packet.y) == [1, 2, 4]
    assert list(packet.t_ns) == [-40_000_000, -1_000, 0] and list(packet.polarity) == [1, -1, 1]
    assert (packet.width, packet.height) == (10, 5)


def test_events_with_integer_nanoseconds_or_float_seconds():
    stamp = 5_250_000_000
    fields = [("x", 0, U16), ("y", 2, U16), ("t", 4, U32), ("polarity", 8, I8)]
    as_ns = cloud(fields, [(1, 1, 999_000_000, -1)], point_step=9)
    as_ns.header.stamp.sec, as_ns.header.stamp.nanosec = 1, 0
    packet = messages.event_packet(as_ns, "e", 4, 4)
    assert packet.t_ns[0] == -1_000_000 and packet.polarity[0] == -1
    seconds = cloud([("x", 0, U16), ("y", 2, U16), ("t", 4, F64), ("p", 12, I8)], [(1, 2, 5.24, 1)], point_step=13)
    packet = messages.event_packet(seconds, "e", 4, 4)
    assert packet.t_ns[0] == 5_240_000_000 - stamp and packet.polarity[0] == 1


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda m: m.fields.pop(2), "no 'z' field"),
        (lambda m: setattr(m.fields[3], "offset", 16), "field 'intensity' ends at byte 20, beyond point_step 18"),
        (lambda m: setattr(m.fields[0], "datatype", 42), "field 'x' has unknown datatype 42"),
        (lambda m: setattr(m.fields[0], "count", 0), "field 'x' has count 0"),
        (lambda m: setattr(m.fields[1], "name", "x"), "duplicate field name 'x'"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "data has 179 bytes, the 10×1 cloud needs 180"),
        (lambda m: setattr(m, "point_step", 0), "point_step 0 must be positive"),
        (lambda m: (setattr(m, "width", 1 << 20), setattr(m, "height", 1 << 20)), "absurd point cloud size"),
        (lambda m: m.fields.clear(), "no fields"),
        (lambda m: (setattr(m, "height", 2), setattr(m, "width", 5), setattr(m, "row_step", 10)), "row_step 10 is smaller"),
    ],
)
def test_malformed_clouds_raise_a_typed_error_naming_topic_and_problem(mutate, needle):
    msg = cloud(XYZIR, lidar_rows(10), point_step=18)
    mutate(msg)
    with pytest.raises(ConversionError, match=needle) as err:
        messages.point_cloud(msg, "lidar/points")
    assert err.value.topic == "lidar/points"


def test_events_missing_polarity_is_named():
    msg = cloud([("x", 0, U16), ("y", 2, U16), ("t", 4, F64)], [(1, 1, 0.0)], point_step=12)
    with pytest.raises(ConversionError, match="no polarity field"):
        messages.event_packet(msg, "events/points", 4, 4)


def test_empty_cloud_converts_to_zero_points():
    msg = cloud(XYZIR, [], point_step=18)
    pc = messages.point_cloud(msg, "lidar/points")
    assert pc.points.shape == (0, 3) and pc.intensity.shape == (0,)


# --- outbound ------------------------------------------------------------------------------------------


def test_outbound_image_and_cloud_round_trip():
    mask = RNG.integers(0, 25, (3, 5), dtype=np.uint8)
    msg = convert.image_msg(mask, "mono8", header())
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("mono8", 5, 3, 5)
    assert np.array_equal(messages.image_array(msg, "mask"), mask)
    colour = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)[:, ::-1]  # a non-contiguous view
    assert np.array_equal(messages.camera_frame(convert.image_msg(colour, "rgb8", header()), "c").image, colour)
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "label", "rgb"],
                      "formats": ["f4", "f4", "f4", "f4", "u1", "f4"], "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})  # fmt: skip
    points = np.zeros(7, dtype)
    points["x"] = np.arange(7)
    points["label"] = np.arange(7) * 3
    out = convert.cloud_msg(points, header())
    assert [(f.name, f.offset, f.datatype) for f in out.fields] == [
        ("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32), ("label", 16, U8), ("rgb", 20, F32)
    ]  # fmt: skip
    back = messages.cloud_array(out, "points").ravel()
    assert np.array_equal(back["label"], points["label"]) and np.array_equal(back["x"], points["x"])


def test_event_times_that_are_not_finite_are_rejected():
    msg = cloud([("x", 0, U16), ("y", 2, U16), ("t", 4, F64), ("p", 12, I8)], [(1, 2, float("nan"), 1)], point_step=13)
    with pytest.raises(ConversionError, match="event times contain NaN"):
        messages.event_packet(msg, "events/points", 4, 4)


# --- event time conventions (inputs.event_time) ---------------------------------------------------------

from modseg_ros.core.types import EventTime  # noqa: E402

SIM_STAMP = 5_250_000_000  # CARLA: simulation seconds since the episode began
WALL_STAMP = 1_795_315_145_457_680_992  # a driver on the wall clock
EVENT_OFFSETS = [-40_000_000, -1_000, 0]


def carla_events(stamp: int, convention: EventTime) -> PointCloud2:
    """Three events in CARLA's packed DVS layout, t written in ``convention``."""
    fields = [("x", 0, U16), ("y", 2, U16), ("t", 4, F64), ("pol", 12, I8)]
    msg = cloud(fields, [(0, 0, 0.0, 0)] * 3, point_step=13)
    pack = {EventTime.INT64_NS: lambda t: struct.pack("<q", t),  # CARLA's native ROS 2 publisher: the struct's bytes
            EventTime.FLOAT_NS: lambda t: struct.pack("<d", float(t)),  # carla-ros-bridge: create_cloud packs the int as 'd'
            EventTime.FLOAT_S: lambda t: struct.pack("<d", t / 1e9)}[convention]  # fmt: skip
    msg.data = b"".join(struct.pack("<HH", x, y) + pack(stamp + dt) + struct.pack("<b", p)
                        for x, y, dt, p in zip([3, 0, 9], [1, 2, 4], EVENT_OFFSETS, [1, 0, 1]))  # fmt: skip
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    return msg


@pytest.mark.parametrize("stamp", [SIM_STAMP, WALL_STAMP])
@pytest.mark.parametrize("convention", [EventTime.INT64_NS, EventTime.FLOAT_NS, EventTime.FLOAT_S])
def test_every_event_time_convention_reads_right_forced_and_auto(convention, stamp):
    msg = carla_events(stamp, convention)
    # a double keeps 53 bits: wall-clock nanoseconds as a double are exact to 256 ns, seconds to about 0.2 µs
    tolerance = 0 if convention is EventTime.INT64_NS or stamp == SIM_STAMP and convention is EventTime.FLOAT_NS else 300
    for setting in (convention, EventTime.AUTO):
        packet = messages.event_packet(msg, "events", 10, 5, setting)
        assert np.allclose(packet.t_ns, EVENT_OFFSETS, rtol=0, atol=tolerance), (setting, packet.t_ns)
        assert list(packet.polarity) == [1, -1, 1]
    points = messages.cloud_array(msg, "events").reshape(-1)
    assert messages.resolve_event_time(points["t"], stamp) is convention


def test_the_auto_rule_tells_sim_time_nanoseconds_from_wall_clock_seconds():
    # the same magnitude, about 1.8e9: simulation nanoseconds (1.8 s into an episode) or wall-clock seconds
    values = np.array([1.79e9, 1.795e9])
    assert messages.resolve_event_time(values, stamp_ns=1_800_000_000) is EventTime.FLOAT_NS
    assert messages.resolve_event_time(values, stamp_ns=1_795_000_000 * 1_000_000_000) is EventTime.FLOAT_S
    # without a header stamp, magnitude decides: above 1e7 is nanoseconds
    assert messages.resolve_event_time(np.array([2.5e9]), 0) is EventTime.FLOAT_NS
    assert messages.resolve_event_time(np.array([12.5]), 0) is EventTime.FLOAT_S


def test_a_wrong_forced_convention_is_visible_and_an_impossible_one_is_an_error():
    msg = carla_events(SIM_STAMP, EventTime.FLOAT_NS)
    misread = messages.event_packet(msg, "events", 10, 5, EventTime.FLOAT_S)  # nanoseconds taken as seconds
    assert misread.t_ns.min() > 1e15  # events from the far future: the health monitor's business, not a crash
    f32 = cloud([("x", 0, U16), ("y", 2, U16), ("t", 4, F32), ("pol", 8, I8)], [(1, 1, 5.2, 1)], point_step=9)
    with pytest.raises(ConversionError, match="int64 nanoseconds need an 8-byte field.*inputs.event_time: int64_ns"):
        messages.event_packet(f32, "events", 4, 4, EventTime.INT64_NS)
    assert messages.event_packet(f32, "events", 4, 4).t_ns[0] == pytest.approx(5_200_000_000 - 5_250_000_000, abs=200)
