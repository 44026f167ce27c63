"""``modseg bench convert``: message -> numpy (and back) against the reference implementations' approach.

Each row converts the same rclpy message both ways (bench/reference.py restates cv_bridge's and
sensor_msgs_py's code paths) and reports the median time and the ratio reference / ours. Ours
returns views where the layout allows; the "+ contiguous" rows add the one copy the node's encoding
makes anyway, so the comparison is like for like. A second table times the per-frame work after
conversion that has no reference: LiDAR -> camera projection (the LiDAR encoding on the default
rig) and event-frame rendering.
"""
from __future__ import annotations

import argparse
from statistics import median
from time import perf_counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=50, help="timed conversions per row (default 50)")


def _time(fn, repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = perf_counter()
        fn()
        samples.append(perf_counter() - start)
    return median(samples)


def _cloud(rows: int, columns: int):
    import numpy as np
    from std_msgs.msg import Header

    from modseg_ros.ros.convert import cloud_msg

    rng = np.random.default_rng(0)
    n = rows * columns
    points = np.zeros(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
    for axis in ("x", "y", "z"):
        points[axis] = rng.normal(0, 20, n)
    points["intensity"] = rng.random(n)
    points["ring"] = np.repeat(np.arange(rows), columns)
    return cloud_msg(points, Header())


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from modseg_ros.bench import reference as ref
    from modseg_ros.core import messages
    from modseg_ros.ros import convert

    rng = np.random.default_rng(0)
    rows = []

    def compare(name: str, ours, reference) -> None:
        t_ours, t_ref = _time(ours, args.repeat), _time(reference, args.repeat)
        rows.append((name, t_ours, t_ref))

    for width, height in ((512, 256), (1920, 1080)):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        rgb = convert.image_msg(pixels, "rgb8", Header())
        bgr = convert.image_msg(pixels, "bgr8", Header())
        size = f"{width}×{height}"
        compare(f"Image rgb8 {size} -> RGB (view)", lambda m=rgb: messages.camera_frame(m, "t"),
                lambda m=rgb: ref.cv_bridge_imgmsg_to_cv2(m, "u1", 3))  # fmt: skip
        compare(f"Image bgr8 {size} -> RGB + contiguous", lambda m=bgr: np.ascontiguousarray(messages.camera_frame(m, "t").image),
                lambda m=bgr: ref.cv_bridge_imgmsg_to_cv2(m, "u1", 3, to_rgb=True))  # fmt: skip
        depth = convert.image_msg(rng.random((height, width), dtype=np.float32) * 80, "32FC1", Header())
        compare(f"Image 32FC1 {size} -> metres, NaN invalid", lambda m=depth: messages.depth_frame(m, "t"),
                lambda m=depth: _invalid_to_nan(ref.cv_bridge_imgmsg_to_cv2(m, "f4", 1)))  # fmt: skip
        compare(f"rgb8 {size} -> Image message", lambda p=pixels: convert.image_msg(p, "rgb8", Header()),
                lambda p=pixels: ref.cv_bridge_cv2_to_imgmsg(p, Image(encoding="rgb8")))  # fmt: skip
    for lidar_rows, columns in ((32, 1024), (128, 2048)):
        cloud = _cloud(lidar_rows, columns)
        compare(f"PointCloud2 {lidar_rows}×{columns} XYZ+I+ring -> xyz, intensity",
                lambda m=cloud: messages.point_cloud(m, "t"),
                lambda m=cloud: (ref.read_points_numpy(m, ("x", "y", "z")), ref.read_points(m)["intensity"].astype(np.float32)))  # fmt: skip
        compare(f"PointCloud2 {lidar_rows}×{columns} -> structured view", lambda m=cloud: messages.cloud_array(m, "t"),
                lambda m=cloud: ref.read_points(m))  # fmt: skip

    per_frame = _per_frame(args.repeat)
    table = Table(title=f"conversions: median of {args.repeat}, reference approach / ours")
    for column in ("conversion", "ours (ms)", "reference (ms)", "ratio ×"):
        table.add_column(column, justify="left" if column == "conversion" else "right")
    for name, t_ours, t_ref in rows:
        table.add_row(name, f"{t_ours * 1e3:.3f}", f"{t_ref * 1e3:.3f}", f"{t_ref / t_ours:.1f}")
    console = Console(width=180)
    console.print(table)
    frames = Table(title=f"per-frame work on the default rig, median of {args.repeat}")
    for column in ("step", "ms / frame"):
        frames.add_column(column, justify="left" if column == "step" else "right")
    for name, seconds in per_frame:
        frames.add_row(name, f"{seconds * 1e3:.2f}")
    console.print(frames)
    return 0


def _per_frame(repeat: int) -> list[tuple[str, float]]:
    """LiDAR -> camera projection and event-frame rendering, ms per frame, on the default rig."""
    import numpy as np

    from modseg_ros.core import messages
    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.encoding import encode_lidar, render_events
    from modseg_ros.core.types import EventPacket, Modality

    config = NodeConfig.load()
    rig, cfg = config.rig, config.encoding
    rows = []
    for lidar_rows, columns in ((32, 1024), (128, 2048)):
        cloud = messages.point_cloud(_cloud(lidar_rows, columns), "t")
        rows.append((f"LiDAR {lidar_rows}×{columns} -> camera {rig.camera.width}×{rig.camera.height} (project, z-buffer, encode)",
                     _time(lambda c=cloud: encode_lidar(c, rig, cfg), repeat)))  # fmt: skip
    events = rig.intrinsics_of(Modality.EVENTS)
    rng = np.random.default_rng(0)
    for count in (10_000, 100_000):
        packet = EventPacket(x=rng.integers(0, events.width, count).astype(np.uint16),
                             y=rng.integers(0, events.height, count).astype(np.uint16),
                             t_ns=np.sort(rng.integers(-50_000_000, 0, count)), polarity=rng.choice([-1, 1], count).astype(np.int8),
                             width=events.width, height=events.height)  # fmt: skip
        rows.append((f"events {count:,} -> event frame {events.width}×{events.height}", _time(lambda p=packet: render_events(p, cfg), repeat)))
    return rows


def _invalid_to_nan(depth):
    import numpy as np

    out = depth.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out
