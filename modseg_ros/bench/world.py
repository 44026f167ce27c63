"""``modseg bench world``: frames per second of the embedded world's full rig, and where the time goes.

One frame is one camera period (50 ms of world time) of the full rig at the rig's cadence: camera,
depth and event camera every frame, the LiDAR every other frame (10 Hz). The sensor figure covers
simulating the measurements; the bag and DELIVER figures add what each writer does per frame
(message serialisation; encodings plus five PNGs), without the disk.
"""
from __future__ import annotations

import argparse
import io
import os
from time import perf_counter, process_time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=40, help="camera periods to time per condition (default 40)")
    parser.add_argument("--width", type=int, default=512, help="camera width (default 512)")
    parser.add_argument("--height", type=int, default=256, help="camera height (default 256)")
    parser.add_argument("--conditions", default="sun,night", help="conditions to time, or all (default sun,night)")
    parser.add_argument("--threads", type=int, default=0, help="rendering threads (default 0 = one per core)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from rich.console import Console
    from rich.table import Table

    from modseg_ros.core.config import load_parameters, rig_from_parameters
    from modseg_ros.core.encoding import EncodingConfig, encode_payload, render_events
    from modseg_ros.data.world import bag_writer
    from modseg_ros.data.world.conditions import make_condition, parse_conditions
    from modseg_ros.data.world.deliver_writer import semantic_png
    from modseg_ros.data.world.simulator import Simulator, Stopwatch, scaled_rig
    from modseg_ros.data.world.town import TownParams, generate_town
    from modseg_ros.errors import ConfigError
    from modseg_ros.paths import config_file

    if args.frames < 2:
        raise ConfigError("--frames must be at least 2")
    conditions = parse_conditions(args.conditions)
    rig = scaled_rig(rig_from_parameters(load_parameters(config_file("any2seg.yaml"))), args.width, args.height)
    console = Console()
    console.print(f"world benchmark: {rig.camera.width}×{rig.camera.height} camera, depth and events at 20 Hz, "
                  f"LiDAR 32×1024 at 10 Hz; {args.frames} frames per condition; {os.cpu_count()} CPUs, "
                  f"rendering threads {args.threads or os.cpu_count()}")  # fmt: skip
    msgs = bag_writer.Messages()
    enc = EncodingConfig()
    dt = 0.05
    rows = []
    for name in conditions:
        watch = Stopwatch()
        start = perf_counter()
        town = generate_town(args.seed, TownParams(duration_s=args.frames * dt + 2.0))
        watch.seconds["town (once)"] += perf_counter() - start
        sim = Simulator(town, make_condition(name, np.random.default_rng(args.seed)), rig, seed=args.seed,
                        threads=args.threads, stopwatch=watch)  # fmt: skip
        sim.camera(0.0)  # builds the static BVH; the event emulator starts here
        sim.events(-dt, 0.0)
        watch.seconds.clear()
        start, cpu_start = perf_counter(), process_time()
        scan = None
        for k in range(1, args.frames + 1):
            t = k * dt
            frame = {"shot": sim.camera(t), "depth": sim.depth(t), "events": sim.events(t - dt, t)}
            if k % 2:
                frame["lidar"] = scan = sim.lidar(t)
            with watch("bag messages"):
                _bag_messages(msgs, rig, frame, render_events(frame["events"], enc))
            with watch("deliver encodings + PNG"):  # (with the latest LiDAR scan)
                _deliver_files(rig, enc, frame, sim.lidar_cloud(scan), encode_payload, semantic_png, Image)
        total, cpu = perf_counter() - start, process_time() - cpu_start
        writers = watch.seconds["bag messages"] + watch.seconds["deliver encodings + PNG"]
        sensors = total - writers
        rows.append((name, args.frames, sensors, watch.seconds["bag messages"], watch.seconds["deliver encodings + PNG"],
                     dict(watch.seconds), cpu * sensors / total))  # fmt: skip

    table = Table(title="frames per second (full rig)")
    for col in ("condition", "sensors", "+ bag messages", "+ DELIVER files", "sensors, CPU s/frame"):
        table.add_column(col, justify="right")
    for name, n, sensors, bag, deliver, _, cpu in rows:
        table.add_row(name, f"{n / sensors:.2f}", f"{n / (sensors + bag):.2f}", f"{n / (sensors + deliver):.2f}", f"{cpu / n:.3f}")
    console.print(table)
    stages = Table(title="where the time goes (ms per frame)")
    stages.add_column("stage")
    for name, *_ in rows:
        stages.add_column(name, justify="right")
    names = [s for s in ("cast", "shade", "camera", "depth", "lidar", "events", "bag messages", "deliver encodings + PNG")]
    for stage in names:
        stages.add_row(stage, *[f"{1000 * r[5].get(stage, 0.0) / r[1]:.1f}" for r in rows])
    other = [1000 * (r[2] - sum(r[5].get(s, 0.0) for s in names[:6])) / r[1] for r in rows]
    stages.add_row("other (python, poses, actor meshes)", *[f"{o:.1f}" for o in other])
    console.print(stages)
    load = os.getloadavg()[0]
    console.print(f"load average during the run: {load:.1f} on {os.cpu_count()} CPUs (wall-clock figures assume a quiet machine)")
    return 0


def _bag_messages(msgs, rig, frame, event_image) -> None:
    from modseg_ros.data.world.bag_writer import EVENT_FIELDS, EVENT_STEP, LIDAR_FIELDS, LIDAR_STEP

    shot, depth, events = frame["shot"], frame["depth"], frame["events"]
    out = [msgs.image(0, "camera_optical", shot.frame.image, "rgb8"), msgs.camera_info(0, "camera_optical", rig.camera),
           msgs.image(0, "camera_optical", shot.labels, "mono8"), msgs.image(0, "depth_optical", depth.depth_m, "32FC1"),
           msgs.image(0, "events_optical", event_image, "rgb8"),
           msgs.cloud(0, "events_optical", EVENT_FIELDS, EVENT_STEP, {"x": events.x, "y": events.y, "t": events.t_ns, "polarity": events.polarity})]  # fmt: skip
    if "lidar" in frame:
        scan = frame["lidar"]
        out.append(msgs.cloud(0, "lidar", LIDAR_FIELDS, LIDAR_STEP, {"x": scan.points[:, 0], "y": scan.points[:, 1],
                                                                     "z": scan.points[:, 2], "intensity": scan.intensity, "ring": scan.ring}))  # fmt: skip
    for msg in out:
        msgs.serialize(msg)


def _deliver_files(rig, enc, frame, cloud, encode_payload, semantic_png, Image) -> None:
    from modseg_ros.core.types import Modality

    images = [frame["shot"].frame.image, semantic_png(frame["shot"].labels),
              encode_payload(Modality.DEPTH, frame["depth"], rig, enc),
              encode_payload(Modality.LIDAR, cloud, rig, enc),
              encode_payload(Modality.EVENTS, frame["events"], rig, enc)]  # fmt: skip
    for image in images:
        Image.fromarray(image).save(io.BytesIO(), format="PNG", compress_level=1)
