"""``modseg bench scale``: how the node's per-message and per-bundle cost grows with the input size.

- LiDAR point count (10k -> 200k points, one scan): what the node does with a scan on its way to a
  mask (conversion from PointCloud2, health check, the LiDAR encoding: projection to the camera
  and z-buffer) and after it (labelled points for ``segmentation/points``).
- Image size (camera, depth and event grids together, 256×128 -> 1920×1080): converting the camera
  and depth images, the four encodings, the network (fixed input size: only the resizing in and
  the upsampling of the logits out grow) and the outputs (colour mask, overlay).

Latency is the median of ``--repeat`` runs. Memory, two ways: the peak resident memory added by
the step (Linux: VmHWM after resetting it through /proc/self/clear_refs; torch's allocations count,
memory the allocator kept from earlier steps is reused and not counted again), and the peak of
Python and numpy allocations in one traced run (tracemalloc; torch's tensors are not traced).
Sizes run smallest first.
"""
from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path
from statistics import median
from time import perf_counter

POINT_COUNTS = (10_000, 25_000, 50_000, 100_000, 200_000)
IMAGE_SIZES = ((256, 128), (512, 256), (1024, 512), (1920, 1080))  # (width, height)
EVENTS_PER_PACKET = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per size (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="model threads (default 1, as the node benchmark)")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(step, repeat: int) -> tuple[float, float, float]:
    """(median ms, peak MB above the resident memory before, peak MB of Python and numpy
    allocations) of ``step()``; the first run is not timed (caches, torch kernels) but its
    memory counts. Freed memory the allocator keeps is reused, not counted again."""
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident memory (VmHWM)
    before = _status_kb("VmRSS")
    step()
    times = []
    for _ in range(repeat):
        start = perf_counter()
        step()
        times.append((perf_counter() - start) * 1e3)
    resident = max(0, _status_kb("VmHWM") - before) / 1024
    tracemalloc.start()  # (a separate, untimed run: tracing slows allocation)
    step()
    allocated = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return median(times), resident, allocated


def _cloud_msg(count: int):
    """A LiDAR-like scan of ``count`` points around the car (XYZ + intensity + ring), as PointCloud2."""
    import numpy as np
    from std_msgs.msg import Header

    from modseg_ros.ros.convert import cloud_msg

    rng = np.random.default_rng(count)
    azimuth = rng.uniform(-np.pi, np.pi, count)
    elevation = rng.uniform(-0.4, 0.1, count)
    distance = rng.uniform(2.0, 60.0, count)
    points = np.zeros(count, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
    points["x"] = distance * np.cos(elevation) * np.cos(azimuth)
    points["y"] = distance * np.cos(elevation) * np.sin(azimuth)
    points["z"] = distance * np.sin(elevation)
    points["intensity"] = rng.random(count)
    points["ring"] = rng.integers(0, 128, count)
    return cloud_msg(points, Header())


def _lidar_rows(repeat: int) -> list[tuple[str, float, float, float]]:
    import numpy as np

    from modseg_ros.core import messages
    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.encoding import encode_lidar
    from modseg_ros.core.health import HealthMonitor
    from modseg_ros.core.postprocess import labelled_points
    from modseg_ros.core.types import Modality, SensorSample

    config = NodeConfig.load()
    rig = config.rig
    labels = np.random.default_rng(0).integers(0, 25, (rig.camera.height, rig.camera.width), dtype=np.uint8)
    rows = []
    for count in POINT_COUNTS:
        msg = _cloud_msg(count)
        monitor = HealthMonitor(config.health, config.inputs.modalities)
        clock = iter(range(10**9, 10**18, 100_000_000))

        def scan(msg=msg, monitor=monitor, clock=clock) -> None:
            now = next(clock)
            cloud = messages.point_cloud(msg, "lidar/points")
            monitor.observe(SensorSample(Modality.LIDAR, now, now, "lidar", cloud), now)
            encode_lidar(cloud, rig, config.encoding)
            labelled_points(cloud, labels, rig)

        if not rows:
            scan()  # once before measuring: first-call costs are no cost of the size
        rows.append((f"{count:,}", *_measure(scan, repeat)))
    return rows


def _image_rows(repeat: int, threads: int) -> list[tuple[str, float, float, float]]:
    import numpy as np
    from std_msgs.msg import Header

    from modseg_ros.core import messages
    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.perception import Perception
    from modseg_ros.core.types import Bundle, EventPacket, Modality, SensorSample
    from modseg_ros.model.loading import load_engine
    from modseg_ros.ros import convert

    rows = []
    engine = None
    cloud = messages.point_cloud(_cloud_msg(32 * 1024), "lidar/points")
    for width, height in IMAGE_SIZES:
        config = NodeConfig.load(overrides={"rig.camera.width": width, "rig.camera.height": height, "model.threads": threads})
        if engine is None:
            engine, _ = load_engine(config.model, config.rig.camera)
        perception = Perception(config, engine)
        rng = np.random.default_rng(width)
        image = convert.image_msg(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "rgb8", Header())
        depth = convert.image_msg((rng.random((height, width), dtype=np.float32) * 60 + 0.5), "32FC1", Header())
        events = EventPacket(x=rng.integers(0, width, EVENTS_PER_PACKET).astype(np.uint16),
                             y=rng.integers(0, height, EVENTS_PER_PACKET).astype(np.uint16),
                             t_ns=np.sort(rng.integers(-50_000_000, 0, EVENTS_PER_PACKET)),
                             polarity=rng.choice([-1, 1], EVENTS_PER_PACKET).astype(np.int8), width=width, height=height)  # fmt: skip

        def bundle(perception=perception, image=image, depth=depth, events=events) -> None:
            payloads = {Modality.CAMERA: messages.camera_frame(image, "camera/image"),
                        Modality.DEPTH: messages.depth_frame(depth, "depth/image"), Modality.LIDAR: cloud,
                        Modality.EVENTS: events}  # fmt: skip
            samples = {m: SensorSample(m, 0, 0, m.value, data) for m, data in payloads.items()}
            seg = perception.segment(Bundle(0, Modality.CAMERA, samples, frozenset(), 0))
            perception.cross_check(seg)
            perception.render(seg)

        if not rows:
            bundle()  # once before measuring: torch's one-time set-up is no cost of the size
        rows.append((f"{width}×{height}", *_measure(bundle, repeat)))
    return rows


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    console = Console(width=180)
    for title, first, rows in (
        ("LiDAR scan: convert + health check + projection/encoding + labelled points", "points", _lidar_rows(args.repeat)),
        (f"four-sensor bundle: convert + encode + network + outputs ({EVENTS_PER_PACKET:,} events, 32k LiDAR points)",
         "camera grid", _image_rows(args.repeat, args.threads)),
    ):  # fmt: skip
        table = Table(title=f"{title}, median of {args.repeat}")
        for column in (first, "ms", "× smallest", "peak RSS added MB", "peak allocated MB (numpy, Python)"):
            table.add_column(column, justify="right")
        for name, ms, resident, allocated in rows:
            table.add_row(name, f"{ms:.1f}", f"{ms / rows[0][1]:.1f}", f"{resident:.0f}", f"{allocated:.1f}")
        console.print(table)
    return 0
