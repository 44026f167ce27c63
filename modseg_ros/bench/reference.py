"""The reference implementations' conversion approaches, restated for comparison (tests and
``modseg bench convert``); cv_bridge and sensor_msgs_py themselves are not installable here.

- ``cv_bridge_imgmsg_to_cv2``: vision_opencv cv_bridge/core.py ``imgmsg_to_cv2``: an ndarray of
  (height, step // pixel size[, channels]) over the buffer, cropped to the width with one copy
  (``np.ascontiguousarray``), byte-swapped when the message's order is not the host's; colour
  conversion (here bgr -> rgb) is a second pass (cvtColor).
- ``cv_bridge_cv2_to_imgmsg``: ``img_msg.data.frombytes(cvim.tobytes())``, two copies.
- ``read_points``: sensor_msgs_py point_cloud2 ``read_points``: a structured view with one field per
  PointField and itemsize point_step, byte-swapped on an order mismatch; ``read_points_numpy`` then
  copies the selected fields into an (N, k) array (structured_to_unstructured).
"""
from __future__ import annotations

import array
import sys

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from modseg_ros.core.messages import POINT_FIELD_TYPES


def cv_bridge_imgmsg_to_cv2(msg, dtype: str, channels: int, to_rgb: bool = False) -> np.ndarray:
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    if channels == 1:
        im = np.ndarray(shape=(msg.height, msg.step // dt.itemsize), dtype=dt, buffer=msg.data)
        im = np.ascontiguousarray(im[: msg.height, : msg.width])
    else:
        im = np.ndarray(shape=(msg.height, msg.step // dt.itemsize // channels, channels), dtype=dt, buffer=msg.data)
        im = np.ascontiguousarray(im[: msg.height, : msg.width, :])
    if msg.is_bigendian == (sys.byteorder == "little"):
        im = im.byteswap().view(im.dtype.newbyteorder())
    if to_rgb:
        im = np.ascontiguousarray(im[..., ::-1])
    return im


def cv_bridge_cv2_to_imgmsg(image: np.ndarray, msg):
    msg.height, msg.width = image.shape[:2]
    msg.step = image.strides[0]
    data = array.array("B")
    data.frombytes(image.tobytes())
    msg.data = data
    return msg


def read_points(msg) -> np.ndarray:
    names, formats, offsets = [], [], []
    for i, f in enumerate(msg.fields):
        item = POINT_FIELD_TYPES[f.datatype]
        name = f.name or f"unnamed_field_{i}"
        for j in range(f.count):
            names.append(f"{name}_{j}" if f.count > 1 else name)
            formats.append(item.str)
            offsets.append(f.offset + j * item.itemsize)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    points = np.ndarray(shape=(msg.width * msg.height,), dtype=dtype, buffer=msg.data)
    if bool(sys.byteorder != "little") != bool(msg.is_bigendian):
        points = points.byteswap()
    return points


def read_points_numpy(msg, field_names: tuple[str, ...]) -> np.ndarray:
    return structured_to_unstructured(read_points(msg)[list(field_names)])


class ApproximateTimeProductSearch:
    """message_filters' Python ``ApproximateTimeSynchronizer.add``, restated: one queue per input
    (stamp -> message, the oldest evicted beyond ``queue_size``); on each message, every other
    queue's stamps within ``slop`` of it are sorted by distance and every combination of one per
    input is tried (``itertools.product``) until one spans less than ``slop``; that set is emitted
    and removed (at most one set per incoming message). Every input must deliver: a silent sensor
    stalls it. test_sync.py checks our synchronizer against it; ``modseg bench sync`` races them."""

    def __init__(self, inputs: int, queue_size: int, slop_ns: int) -> None:
        self.queues: list[dict[int, object]] = [{} for _ in range(inputs)]
        self.queue_size = queue_size
        self.slop_ns = slop_ns
        self.bundles = 0

    def add(self, index: int, stamp_ns: int, msg: object) -> tuple | None:
        import itertools

        own = self.queues[index]
        own[stamp_ns] = msg
        while len(own) > self.queue_size:
            del own[min(own)]
        candidates = []
        for i, queue in enumerate(self.queues):
            if i == index:
                continue
            near = sorted((s for s in queue if abs(s - stamp_ns) <= self.slop_ns), key=lambda s: abs(s - stamp_ns))
            if not near:
                return None
            candidates.append(near)
        for combination in itertools.product(*candidates):
            stamps = [*combination[:index], stamp_ns, *combination[index:]]
            if max(stamps) - min(stamps) < self.slop_ns:
                bundle = tuple(q.pop(s) for q, s in zip(self.queues, stamps))
                self.bundles += 1
                return bundle
        return None
