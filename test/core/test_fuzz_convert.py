"""Property-based fuzzing of every conversion (core/messages.py, ros/convert.py) on real rclpy messages, random and
adversarial (test/fuzz_messages.py).

Properties: a conversion either returns a payload with the documented shape, type and value range,
or raises ``ConversionError`` naming the topic; no other exception and no numpy warning escapes.
Where the validity of a message is decidable from its fields (images, camera infos), the
conversion accepts exactly the valid ones; clouds with a breaking defect are always refused.
"""
from __future__ import annotations

import warnings

import numpy as np
from fuzz_messages import (
    BREAKING,
    EVENT_LAYOUTS,
    KNOWN_ENCODINGS,
    LIDAR_LAYOUT,
    TOPIC,
    camera_infos,
    clouds,
    image_is_valid,
    images,
)
from hypothesis import given
from hypothesis import strategies as st

from modseg_ros.core import messages
from modseg_ros.errors import ConversionError


def converted(fn, *args):
    """The conversion's result, or None after a ConversionError that names the topic; any warning fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return fn(*args)
        except ConversionError as err:
            assert err.topic == TOPIC and str(err).startswith(f"{TOPIC}: ") and err.problem
            return None


# --- images ------------------------------------------------------------------------------------------

@given(images())
def test_image_passthrough_accepts_exactly_the_valid_images(case):
    msg = case.msg
    out = converted(messages.image_array, msg, TOPIC)
    assert (out is not None) == image_is_valid(msg, KNOWN_ENCODINGS)
    if out is not None:
        code, channels = messages._IMAGE_ENCODINGS[msg.encoding]
        assert out.shape == ((msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels))
        assert out.dtype == np.dtype(code) and out.dtype.isnative


@given(images())
def test_camera_and_event_images_are_rgb8_on_the_message_grid(case):
    msg = case.msg
    for fn in (lambda m, t: messages.camera_frame(m, t).image, lambda m, t: messages.event_frame(m, t).image):
        rgb = converted(fn, msg, TOPIC)
        assert (rgb is not None) == image_is_valid(msg, messages.CAMERA_ENCODINGS)
        if rgb is not None:
            assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8


@given(images())
def test_depth_is_float32_metres_on_the_message_grid(case):
    msg = case.msg
    frame = converted(messages.depth_frame, msg, TOPIC)
    assert (frame is not None) == image_is_valid(msg, messages.DEPTH_ENCODINGS)
    if frame is not None:  # (no-depth markers are kept as sent: core/types.py DepthFrame)
        assert frame.depth_m.shape == (msg.height, msg.width) and frame.depth_m.dtype == np.float32


@given(camera_infos())
def test_camera_info_gives_positive_finite_intrinsics_or_is_rejected(case):
    msg = case.msg
    intrinsics = converted(messages.camera_intrinsics, msg, TOPIC)
    k = np.asarray(msg.k)
    valid = (0 < msg.width and 0 < msg.height and msg.width * msg.height <= messages.MAX_PIXELS
             and np.isfinite(k).all() and k[0] > 0 and k[4] > 0)  # fmt: skip
    assert (intrinsics is not None) == bool(valid)
    if intrinsics is not None:
        assert (intrinsics.width, intrinsics.height) == (msg.width, msg.height) and intrinsics.fx > 0 and intrinsics.fy > 0


@given(clouds([LIDAR_LAYOUT]))
def test_lidar_clouds_give_n_by_3_points_or_a_named_error(case):
    msg, damage = case.msg, case.damage
    cloud = converted(messages.point_cloud, msg, TOPIC, 255.0)
    if damage in BREAKING:
        assert cloud is None, damage
        return
    assert cloud is not None, damage
    n = msg.width * msg.height
    assert cloud.points.shape == (n, 3) and cloud.points.dtype == np.float32
    assert cloud.intensity.shape == (n,) and cloud.intensity.dtype == np.float32
    assert cloud.ring is not None and cloud.ring.shape == (n,) and cloud.ring.dtype == np.uint16


@given(clouds(EVENT_LAYOUTS), st.integers(1, 640), st.integers(1, 480))
def test_event_packets_give_aligned_arrays_or_a_named_error(case, width, height):
    msg, damage = case.msg, case.damage
    packet = converted(messages.event_packet, msg, TOPIC, width, height)
    if damage in BREAKING:
        assert packet is None, damage
        return
    if packet is None:
        return  # NaN / Inf / out-of-range times or coordinates: a named error is the right answer
    n = msg.width * msg.height
    assert (packet.width, packet.height) == (width, height)
    for array, dtype in ((packet.x, np.uint16), (packet.y, np.uint16), (packet.t_ns, np.int64), (packet.polarity, np.int8)):
        assert array.shape == (n,) and array.dtype == dtype
    assert set(np.unique(packet.polarity)) <= {-1, 1}


@given(clouds([LIDAR_LAYOUT] + EVENT_LAYOUTS))
def test_structured_view_has_one_entry_per_point(case):
    msg, damage = case.msg, case.damage
    points = converted(messages.cloud_array, msg, TOPIC)
    if damage in BREAKING and damage != "drop_x":  # without x it is still a valid cloud, just not a LiDAR one
        assert points is None, damage
    elif points is not None:
        assert points.shape == (msg.height, msg.width) and points.dtype.itemsize == msg.point_step
