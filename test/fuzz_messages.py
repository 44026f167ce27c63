"""Hypothesis strategies for random and adversarial sensor messages (real rclpy message objects):
images, camera infos and point clouds with wrong encodings, step and size mismatches, truncated or
padded data, NaN / Inf / huge values, zero and huge dimensions, absurd point counts, broken field
tables, both byte orders. Used by the conversion and the perception fuzz tests."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from modseg_ros.core import messages


class Case:
    """A generated message and how it was made, with a short repr (hypothesis prints failing cases)."""

    def __init__(self, msg, damage: str | None = None, **notes):
        self.msg, self.damage, self.notes = msg, damage, notes

    def __repr__(self) -> str:
        m = self.msg
        fields = [(f.name, f.offset, f.datatype, f.count) for f in getattr(m, "fields", [])]
        shape = {k: getattr(m, k) for k in ("encoding", "height", "width", "step", "point_step", "row_step", "is_bigendian")
                 if hasattr(m, k)}  # fmt: skip
        return f"Case({type(m).__name__} {shape} data={len(getattr(m, 'data', b''))} B fields={fields} damage={self.damage} {self.notes})"

TOPIC = "fuzz/input"
U32 = 2**32 - 1
# Float values that break naive code: NaN, infinities, signed zeros, denormals, extremes.
SPECIAL_FLOATS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1e-30, -1.0, 0.5, 1.0, 80.0])

stamps = st.builds(Time, sec=st.integers(-(2**31), 2**31 - 1), nanosec=st.integers(0, U32))
headers = st.builds(Header, stamp=stamps, frame_id=st.sampled_from(["", "camera_optical", "lidar", "ünïcode/frame"]))
# Sizes: mostly small enough to build, sometimes zero or far beyond any buffer.
dims = st.one_of(st.integers(0, 9), st.integers(0, 9), st.sampled_from([1 << 15, 1 << 24, U32]))
seeds = st.integers(0, 2**32 - 1)
MAX_BYTES = 1 << 14


def payload_bytes(length: int, seed: int, floats: str | None = None, specials: bool = False) -> bytes:
    """``length`` bytes: random, or (``floats`` = numpy float code) float values mixing in NaN / Inf / extremes."""
    rng = np.random.default_rng(seed)
    if floats is None or not specials:
        return rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    itemsize = np.dtype(floats).itemsize
    values = rng.choice(SPECIAL_FLOATS, length // itemsize + 1).astype(floats)
    return values.tobytes()[:length]


KNOWN_ENCODINGS = sorted(messages._IMAGE_ENCODINGS)
ENCODINGS = st.one_of(st.sampled_from(KNOWN_ENCODINGS), st.sampled_from(["yuv422", "", "RGB8", "bayer_rggb8", "8UC5", "32FC", "rgb8 "]))


@st.composite
def images(draw):
    encoding = draw(ENCODINGS)
    code, channels = messages._IMAGE_ENCODINGS.get(encoding, ("u1", 3))
    itemsize = np.dtype(code).itemsize
    height, width = draw(dims), draw(dims)
    natural = width * channels * itemsize
    step = draw(st.one_of(st.just(natural), st.just(natural), st.integers(natural, natural + 9),
                          st.integers(0, natural), st.just(U32)))  # fmt: skip
    step = min(step, U32)
    needed = step * height
    length = draw(st.one_of(st.just(needed), st.integers(0, needed + 7))) if needed <= MAX_BYTES else draw(st.integers(0, 64))
    floats = code if code.startswith("f") else None
    data = payload_bytes(length, draw(seeds), floats, draw(st.booleans()))
    return Case(Image(header=draw(headers), height=height, width=width, encoding=encoding,
                      is_bigendian=draw(st.integers(0, 1)), step=step, data=data))  # fmt: skip


def image_is_valid(msg: Image, allowed) -> bool:
    if msg.encoding not in allowed:
        return False
    code, channels = messages._IMAGE_ENCODINGS[msg.encoding]
    itemsize = np.dtype(code).itemsize
    h, w = msg.height, msg.width
    return (0 < h and 0 < w and h * w <= messages.MAX_PIXELS and msg.step >= w * channels * itemsize
            and msg.step % itemsize == 0 and len(msg.data) >= msg.step * h)  # fmt: skip


@st.composite
def camera_infos(draw):
    k = draw(st.lists(st.one_of(st.sampled_from(SPECIAL_FLOATS.tolist()), st.floats(-1e4, 1e4)), min_size=9, max_size=9))
    if draw(st.booleans()):  # a plausible matrix, sometimes
        k = [draw(st.floats(1.0, 2000.0)), 0.0, draw(st.floats(0, 2000)), 0.0, draw(st.floats(1.0, 2000.0)),
             draw(st.floats(0, 2000)), 0.0, 0.0, 1.0]  # fmt: skip
    return Case(CameraInfo(header=draw(headers), width=draw(dims), height=draw(dims), k=k), k=k)


# --- point clouds ----------------------------------------------------------------------------------

F32, F64 = PointField.FLOAT32, PointField.FLOAT64
LIDAR_LAYOUT = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32), ("ring", 16, PointField.UINT16)]
EVENT_LAYOUTS = [
    [("x", 0, PointField.UINT16), ("y", 2, PointField.UINT16), ("t", 4, F64), ("polarity", 12, PointField.INT8)],  # CARLA
    [("x", 0, PointField.UINT16), ("y", 2, PointField.UINT16), ("t", 4, PointField.UINT32), ("p", 8, PointField.INT8)],
    [("x", 0, F32), ("y", 4, F32), ("ts", 8, F64), ("pol", 16, PointField.INT16)],
]
# Damage that makes any cloud malformed, and changes that keep it valid.
BREAKING = ("drop_x", "offset_beyond_step", "unknown_datatype", "zero_count", "duplicate_name", "huge_count",
            "point_step_zero", "point_step_short", "truncated", "absurd_count", "row_step_short", "no_fields")  # fmt: skip
HARMLESS = (None, "padded_step", "big_endian", "organised", "row_padding", "extra_data", "extra_field", "empty")


@st.composite
def clouds(draw, layouts):
    layout = draw(st.sampled_from(layouts))
    damage = draw(st.sampled_from(BREAKING + HARMLESS))
    fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in layout]
    end = max(o + np.dtype(messages.POINT_FIELD_TYPES[d]).itemsize for _, o, d in layout)
    point_step = end + (draw(st.integers(1, 12)) if damage == "padded_step" else 0)
    n = 0 if damage == "empty" else draw(st.one_of(st.integers(1, 40), st.sampled_from([1000, 5000])))
    height = draw(st.sampled_from([d for d in (2, 4, 5) if n % d == 0] or [1])) if damage in ("organised", "row_padding") else 1
    width = n // height
    row_pad = draw(st.integers(1, 16)) if damage == "row_padding" else 0
    row_step = width * point_step + row_pad
    length = row_step * height
    big = damage == "big_endian"
    seed, specials = draw(seeds), draw(st.booleans())
    data = payload_bytes(length, seed, None)
    if specials:  # floats full of NaN / Inf / extremes instead of random bits
        data = _special_points(layout, point_step, n, row_step, height, seed, big)
    if damage == "drop_x":
        fields = fields[1:]
    elif damage == "offset_beyond_step":
        fields[-1].offset = point_step
    elif damage == "unknown_datatype":
        fields[0].datatype = draw(st.sampled_from([0, 9, 255]))
    elif damage == "zero_count":
        fields[0].count = 0
    elif damage == "duplicate_name":
        fields[1].name = fields[0].name
    elif damage == "huge_count":
        fields[0].count = U32
    elif damage == "point_step_zero":
        point_step = 0
    elif damage == "point_step_short":
        point_step = end - 1
    elif damage == "truncated":
        data = data[: draw(st.integers(0, max(length - 1, 0)))] if length else data
        width, height = (max(width, 1), height)
    elif damage == "absurd_count":
        width, height = draw(st.sampled_from([(U32, U32), (1 << 20, 1 << 20), (U32, 1)]))
    elif damage == "row_step_short":
        height, width = 2, max(width, 1)
        row_step = width * point_step - 1
        data = payload_bytes(2 * width * point_step, 0)
    elif damage == "no_fields":
        fields = []
    elif damage == "extra_data":
        data += bytes(draw(st.integers(1, 64)))
    elif damage == "extra_field":
        fields.append(PointField(name="label", offset=point_step - 1, datatype=PointField.UINT8, count=1))
    msg = PointCloud2(header=draw(headers), height=height, width=width, fields=fields, is_bigendian=big,
                      point_step=point_step, row_step=min(row_step, U32), is_dense=draw(st.booleans()), data=data)  # fmt: skip
    return Case(msg, damage, seed=seed, specials=specials)


def _special_points(layout, point_step, n, row_step, height, seed, big_endian) -> bytes:
    rng = np.random.default_rng(seed)
    order = ">" if big_endian else "<"
    dtype = np.dtype({"names": [f[0] for f in layout], "offsets": [f[1] for f in layout], "itemsize": point_step,
                      "formats": [messages.POINT_FIELD_TYPES[f[2]].newbyteorder(order) for f in layout]})  # fmt: skip
    points = np.zeros(n, dtype)
    for name, _, datatype in layout:
        kind = messages.POINT_FIELD_TYPES[datatype]
        if kind.kind == "f":
            points[name] = rng.choice(SPECIAL_FLOATS, n)
        else:
            info = np.iinfo(kind)
            points[name] = rng.choice(np.array([info.min, info.max, 0, 1, 7], dtype=kind), n)
    rows = points.view(np.uint8).reshape(height, -1) if n else np.zeros((height, 0), np.uint8)
    pad = np.zeros((height, row_step - rows.shape[1]), np.uint8)
    return np.concatenate([rows, pad], axis=1).tobytes()
