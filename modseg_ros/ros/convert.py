"""numpy -> sensor_msgs, and the rclpy classes of the node's inputs.

The readers (messages -> numpy) need no rclpy and live in core/messages.py; what builds rclpy
messages is here.
"""
from __future__ import annotations

import sys

import numpy as np
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from modseg_ros.core.messages import IMAGE, POINT_CLOUD, POINT_FIELD_CODES

# core/messages.py SensorInput.msg_type -> the rclpy class a subscription takes
MESSAGE_CLASSES: dict[str, type] = {IMAGE: Image, POINT_CLOUD: PointCloud2}


def image_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    """H×W (mono8) or H×W×3 (rgb8) uint8 -> Image, one copy of the pixels."""
    array = np.ascontiguousarray(array)
    msg = Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = array.shape[1] * (array.shape[2] if array.ndim == 3 else 1) * array.itemsize
    msg.data = array.tobytes()
    return msg


def cloud_msg(points: np.ndarray, header: Header) -> PointCloud2:
    """A 1-D structured array -> unorganised PointCloud2 with the same field layout (native order)."""
    fields = []
    for name in points.dtype.names:
        dtype, offset = points.dtype.fields[name][:2]
        fields.append(PointField(name=name, offset=offset, datatype=POINT_FIELD_CODES[dtype.newbyteorder("=")], count=1))
    points = np.ascontiguousarray(points)
    msg = PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=sys.byteorder != "little")
    msg.point_step = points.dtype.itemsize
    msg.row_step = msg.point_step * len(points)
    msg.is_dense = True
    msg.data = points.tobytes()
    return msg
