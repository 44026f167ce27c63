"""``modseg bench node``: the live node against its own model, over real DDS.

1. The bare model forward (``engine.predict`` on encoded inputs) of a four-sensor bundle is timed
   in this process, 32 times with idle gaps; its median sets the model-limited rate R = 1 / forward.
   What the node does per message outside the network (``Perception.receive``: conversion, content
   checks, encoding, synchronisation) is timed on the same messages.
2. The node runs in a child process (``modseg run``) and a second child streams the synthetic
   street (``python -m modseg_ros.ros.stream``) in three phases: ``latency`` at R / 2 (the worker is
   idle when a bundle completes, so the end-to-end latency is the node's own cost), ``model-limited``
   at 0.9 R (masks per bundle offered; no backlog) and ``overload`` at ``--overload`` × R (newest
   bundle wins: drops are counted, latency stays flat).
3. From ``segmentation/info`` (end-to-end latency: last input in -> mask out, measured by the node)
   and the pipeline's ``/diagnostics`` counters (bundles offered, masks published), per phase.
   The node's CPU (user + system seconds per wall second over the stream: 100 % is one core) and
   resident memory at the end of the phase come from psutil (ros/node_process.py), its engine
   process included.
4. After the node has stopped, the bare forward is timed again on the very bundles the node
   segmented (same frames, same modality subsets): once at the phase's bundle rate, as the node
   runs it (the ratio's denominator), and once back-to-back (the best case, also printed). The node
   publishes the mask before it computes the consistency scores; the bare forward includes them as
   the node computes them per bundle, and is also timed without them ("mask only": the network's
   work before the mask, the strictest denominator).

On a small machine the stream publisher (about 25 MB per bundle at 1920×1080) competes with the node
for the cores; ``--stream-cpus`` pins it to some CPUs and the node (with its engine) to the others.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

import numpy as np

from modseg_ros.core.types import Modality
from modseg_ros.errors import ConfigError
from modseg_ros.ros.node_process import NodeProcess

LIDAR_DIVIDER = 2  # the LiDAR runs at half the camera rate, as on the default rig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="measured stream time per phase (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="stream time before measuring (default 3)")
    parser.add_argument("--rate", type=float, default=0.0, help="model-limited camera rate R in Hz (default: 1 / bare forward)")
    parser.add_argument("--overload", type=float, default=2.0, help="overload phase at this multiple of R (0 skips)")
    parser.add_argument("--width", type=int, default=512, help="camera width (default 512, the shipped rig)")
    parser.add_argument("--height", type=int, default=256, help="camera height (default 256)")
    parser.add_argument("--lidar-beams", type=int, default=16, help="LiDAR rings of the synthetic street (default 16; 128 for a 128-beam sensor)")
    parser.add_argument("--lidar-azimuths", type=int, default=512, help="LiDAR firings per revolution (default 512; 2048 for 128×2048)")
    parser.add_argument("--threads", type=int, default=None,
                        help="model threads in the node and for the bare forward (default 1; with --busy-cores: model.threads of the parameter file)")
    parser.add_argument("--model", default="", help="checkpoint (default: the parameter file's choice)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="model backend in the node and for the bare forward (onnx: the .onnx graphs beside the checkpoint)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a node parameter for every phase, YAML value (e.g. health.tick_rate_hz=20); repeatable")
    parser.add_argument("--busy-cores", type=int, default=0, metavar="N",
                        help="steadiness under load instead of the phases above: the rig's 20 Hz stream (--kill falls "
                             "silent half-way), once idle and once beside N busy-loop processes; prints masks/s loaded "
                             "÷ idle, the largest mask gap after the sensor dies and alarms on healthy sensors")
    parser.add_argument("--kill", choices=("camera", "depth", "lidar", "events"), default="camera",
                        help="with --busy-cores: the sensor that falls silent half-way through (default camera, the trigger)")
    parser.add_argument("--stream-cpus", default="", metavar="LIST",
                        help="pin the stream publisher to these CPUs (e.g. 1) and the node to the others, to tell the "
                             "node's cost from the publisher's on a small machine (default: no pinning)")
    parser.add_argument("--viewer", action="store_true",
                        help="also subscribe to the colour mask, overlay and labelled points, as RViz would (the node "
                             "draws them only for subscribers)")  # fmt: skip


def _node_parameters(args: argparse.Namespace, rate: float) -> dict:
    """Parameters for the node at this camera rate, as a user would set them for their rig: the rig
    size, and health limits (with the nominal rates) and slops from the rates."""
    params = {"rig.camera.width": args.width, "rig.camera.height": args.height, "model.threads": args.threads,
              "model.path": args.model, "model.backend": args.backend, "outputs.diagnostics_rate_hz": 4.0, "sync.max_wait_s": 0.5 / rate}  # fmt: skip
    for modality in ("camera", "depth", "events", "lidar"):
        divider = LIDAR_DIVIDER if modality == "lidar" else 1
        r = rate / divider
        params.update({f"health.{modality}.rate_hz": r, f"health.{modality}.timeout_s": 2.0 / r + 0.03,
                       f"health.{modality}.warn_rate_hz": 0.5 * r, f"health.{modality}.error_rate_hz": 0.2 * r,
                       f"sync.{modality}.slop_s": (0.55 if divider > 1 else 0.5) / r})  # fmt: skip
    params.update(_overrides(args.overrides))
    return params


def _overrides(pairs: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs as parameters (values parsed as YAML, as in a parameter file)."""
    import yaml

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. health.tick_rate_hz=20")
        params[key] = yaml.safe_load(value)
    return params


def _cpus(spec: str) -> set[int]:
    """``--stream-cpus`` ("1", "0,2") as a set of CPUs this process may use; ConfigError otherwise."""
    if not spec:
        return set()
    try:
        cpus = {int(part) for part in spec.split(",")}
    except ValueError:
        raise ConfigError(f"--stream-cpus {spec!r}: expected CPU numbers separated by commas, e.g. 1") from None
    available = os.sched_getaffinity(0)
    if not cpus <= available or cpus == available:
        raise ConfigError(f"--stream-cpus {spec!r}: must be some, not all, of the CPUs available {sorted(available)}")
    return cpus


def _write_params(params: dict, path: Path) -> None:
    nested: dict = {}
    for key, value in params.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    import yaml

    path.write_text(yaml.safe_dump({"any2seg": {"ros__parameters": nested}}))


class _Bundles:
    """Rebuilds, from stamps, the samples the stream sent: same frames, converted as the node does."""

    def __init__(self, scenario, config):
        from modseg_ros.ros.stream import Frames

        self.frames = Frames(scenario)
        self.scenario = scenario
        self.config = config

    def sample(self, modality: Modality, stamp_ns: int, start_ns: int):
        from modseg_ros.core import messages
        from modseg_ros.core.types import SensorSample

        rate = self.scenario.rate_hz[modality.value]
        k = round((stamp_ns - start_ns) * rate / 1e9)
        msg = self.frames.message(modality.value, k, stamp_ns)
        events = self.config.rig.intrinsics_of(Modality.EVENTS)
        data = {
            Modality.CAMERA: lambda: messages.camera_frame(msg, "camera"),
            Modality.DEPTH: lambda: messages.depth_frame(msg, "depth"),
            Modality.LIDAR: lambda: messages.point_cloud(msg, "lidar"),
            Modality.EVENTS: lambda: messages.event_packet(msg, "events", events.width, events.height),
        }[modality]()
        return SensorSample(modality, stamp_ns, 0, modality.value, data)


class PipelineRecorder:
    """Records ``segmentation/info`` and keeps the latest pipeline counters from ``/diagnostics``;
    with ``viewer``, also takes the drawn outputs, as RViz would."""

    def __init__(self, viewer: bool = False):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2

        from modseg_ros.msg import SegmentationInfo, SensorHealthArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_recorder", context=self.context)
        self.infos: list = []
        self.arrivals_ns: list[int] = []  # system time each info arrived (comparable with the stream's stamps)
        self.health: list = []  # sensor_health as published
        self.pipeline: dict = {}
        self.node.create_subscription(SegmentationInfo, "segmentation/info", self._info, 100)
        self.node.create_subscription(SensorHealthArray, "sensor_health", self.health.append, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 10)
        for msg_type, topic in ((Image, "segmentation/color_mask"), (Image, "segmentation/overlay"),
                                (PointCloud2, "segmentation/points")) if viewer else ():  # fmt: skip
            self.node.create_subscription(msg_type, topic, lambda _msg: None, qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._run = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while self._run:
            self.executor.spin_once(timeout_sec=0.05)

    def _info(self, msg):
        self.arrivals_ns.append(time.time_ns())
        self.infos.append(msg)

    def clear(self):
        self.infos.clear()
        self.arrivals_ns.clear()
        self.health.clear()
        self.pipeline = {}

    def _diagnostics(self, msg):
        for status in msg.status:
            if status.name.endswith(": pipeline"):
                self.pipeline = {kv.key: kv.value for kv in status.values}

    def counters(self) -> tuple[int, int]:
        time.sleep(0.6)  # one more diagnostics period
        return int(self.pipeline.get("bundles_offered", 0)), int(self.pipeline.get("masks_published", 0))

    def close(self):
        import rclpy

        self._run = False
        self._thread.join(timeout=2)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _bare_forward_ms(engine, perception, bundles, period_s: float = 0.0, mask_only: bool = False) -> list[float]:
    """The forward of each bundle in this process, with the consistency scores if the node computes
    them (``mask_only``: without, the network's work before the mask); with ``period_s``, one forward
    per period, as the node sees them (a forward after an idle gap is 10-20 % slower than
    back-to-back: cold caches)."""
    consistency = perception.config.consistency.enabled and not mask_only
    encoded = [{m: perception.encode(s) for m, s in b.items()} for b in bundles]
    rig = perception.rig.camera
    engine.predict(encoded[0], output_size=(rig.height, rig.width), consistency=consistency)  # warm-up
    times = []
    for inputs in encoded:
        start = time.perf_counter()
        engine.predict(inputs, output_size=(rig.height, rig.width), consistency=consistency)
        times.append((time.perf_counter() - start) * 1e3)
        time.sleep(max(0.0, period_s - times[-1] / 1e3))
    return times


def _arrival_ms(config, engine, bundles: _Bundles) -> dict[Modality, tuple[float, float]]:
    """What the node does with each message as it arrives, outside the network: ``Perception.receive``
    (conversion, content checks, the encoding on the processing grid, synchronisation) on the
    probe's messages; wall and CPU ms of this thread, median of 8 per sensor after one warm-up."""
    from modseg_ros.core.messages import sensor_inputs
    from modseg_ros.core.perception import Perception

    perception = Perception(config, engine)
    inputs = sensor_inputs(config)
    times: dict[Modality, list[tuple[float, float]]] = {m: [] for m in inputs}
    for k in range(9):
        stamp = 10**9 + k * 100_000_000
        for modality, source in inputs.items():
            msg = bundles.frames.message(modality.value, k, stamp)
            wall, cpu = time.perf_counter(), time.thread_time()
            perception.receive(modality, lambda: source.sample(msg, source.topic, stamp), stamp)
            times[modality].append(((time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3))
    return {m: (median(w for w, _ in t[1:]), median(c for _, c in t[1:])) for m, t in times.items()}


def _phase(args: argparse.Namespace, name: str, rate: float, tmp: Path, recorder: PipelineRecorder) -> dict:
    """One phase: a node configured for this rate, the stream, what the node published."""
    deadline = time.monotonic() + 15
    while recorder.node.count_publishers("/segmentation/info") and time.monotonic() < deadline:
        time.sleep(0.1)  # the previous phase's node leaves the graph
    params_file = tmp / f"params-{rate:.2f}.yaml"
    _write_params(_node_parameters(args, rate), params_file)
    node = NodeProcess(params_file)
    stream_cpus = _cpus(args.stream_cpus)
    if stream_cpus:  # (before the node starts its threads and its engine process: they inherit it)
        os.sched_setaffinity(node.proc.pid, os.sched_getaffinity(0) - stream_cpus)
    try:
        deadline = time.monotonic() + 120
        while recorder.node.count_publishers("/segmentation/info") == 0:
            if not node.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start:\n{node.tail()}")
            time.sleep(0.1)
        rates = {"camera": rate, "depth": rate, "events": rate, "lidar": rate / LIDAR_DIVIDER}
        scenario = {"duration_s": args.warmup + args.seconds, "rate_hz": rates, "width": args.width, "height": args.height,
                    "lidar_beams": args.lidar_beams, "lidar_azimuths": args.lidar_azimuths}  # fmt: skip
        recorder.clear()
        before, wall = node.resources(), time.monotonic()
        stream = subprocess.Popen([sys.executable, "-m", "modseg_ros.ros.stream", json.dumps(scenario)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        if stream_cpus:  # (it renders its frames before it streams: pinned before the timed part)
            os.sched_setaffinity(stream.pid, stream_cpus)
        try:
            stdout, stderr = stream.communicate(timeout=args.warmup + args.seconds + 120)
        except subprocess.TimeoutExpired:
            stream.kill()
            stream.communicate()
            raise
        if stream.returncode != 0:
            raise RuntimeError(f"the stream failed: {stderr}")
        after, wall = node.resources(), time.monotonic() - wall
        time.sleep(1.0)
        offered, published = recorder.counters()
    finally:
        node.stop(timeout_s=30)
    sent = [json.loads(line) for line in stdout.splitlines()]
    start = min(r["stamp"] for r in sent)
    measured_from = start + int(args.warmup * 1e9)
    infos = [i for i in recorder.infos if i.header.stamp.sec * 10**9 + i.header.stamp.nanosec >= measured_from]
    if not infos:
        raise RuntimeError(f"phase {name}: the node published no masks after the warm-up; its log ends:\n{node.tail()}")
    return {"name": name, "rate": rate, "start": start, "infos": infos, "offered": offered, "published": published,
            "scenario": scenario, "cpu": (after.cpu_s - before.cpu_s) / wall, "rss_mb": after.rss_bytes / 2**20}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.perception import Perception
    from modseg_ros.core.types import MODALITIES
    from modseg_ros.model.loading import load_engine
    from modseg_ros.ros.stream import Scenario

    if args.busy_cores:
        if args.stream_cpus:
            raise ConfigError("--stream-cpus applies to the rate phases, not to --busy-cores")
        return run_loaded(args)
    console = Console(width=220)
    args.threads = args.threads or 1
    torch.set_num_threads(args.threads)
    probe = NodeConfig.from_parameters(_node_parameters(args, 10.0))
    engine, note = load_engine(probe.model, probe.rig.camera)
    perception = Perception(probe, engine)
    probe_scenario = Scenario(duration_s=1.0, rate_hz={m.value: 10.0 for m in MODALITIES}, width=args.width, height=args.height,
                              lidar_beams=args.lidar_beams, lidar_azimuths=args.lidar_azimuths)  # fmt: skip
    probe_bundles = _Bundles(probe_scenario, probe)
    full = [{m: probe_bundles.sample(m, 10**9 + k * 100_000_000, 10**9) for m in MODALITIES} for k in range(8)]
    # R from 32 forwards with idle gaps, as the node runs them (8 back-to-back ones read 10-20 % fast
    # on this machine, which put the "0.9 R" phase above the model's real rate)
    forward_ms = median(_bare_forward_ms(engine, perception, full * 4, period_s=0.1))
    rate = args.rate or round(1000.0 / forward_ms, 2)
    console.print(f"{note}\nbare forward of a four-sensor bundle: {forward_ms:.1f} ms ({args.threads} thread(s)); "
                  f"model-limited rate R = {rate} Hz")  # fmt: skip
    arrival = _arrival_ms(probe, engine, probe_bundles)
    per_bundle = sum(cpu / (LIDAR_DIVIDER if m is Modality.LIDAR else 1) for m, (_, cpu) in arrival.items())
    console.print("outside the network, per message on arrival (conversion, content checks, encoding, sync; wall / CPU "
                  "ms): " + ", ".join(f"{m.value} {w:.1f} / {c:.1f}" for m, (w, c) in arrival.items())
                  + f"; per bundle (LiDAR every {LIDAR_DIVIDER}nd bundle) {per_bundle:.1f} ms CPU")  # fmt: skip

    phases = [("latency (R/2)", rate / 2), ("model-limited (0.9 R)", 0.9 * rate)]
    if args.overload:
        phases.append((f"overload ({args.overload:g} R)", args.overload * rate))
    tmp = Path(tempfile.mkdtemp(prefix="modseg-bench-node-"))
    recorder = PipelineRecorder(args.viewer)
    results = []
    try:
        for name, phase_rate in phases:
            results.append(_phase(args, name, phase_rate, tmp, recorder))
    finally:
        recorder.close()

    table = Table(title=f"node benchmark: {args.width}×{args.height}, {args.threads} model thread(s), {args.backend}, "
                        f"{args.seconds:.0f} s per phase")  # fmt: skip
    for column in ("phase", "camera Hz", "masks / bundles offered", "e2e p50 / p99 ms", "in-node forward p50 ms",
                   "bare at the phase rate p50 / p99 ms", "e2e ÷ bare p50 / p99", "bare back-to-back p50 / p99 ms",
                   "e2e ÷ back-to-back p50 / p99", "bare mask only p50 / p99 ms", "e2e ÷ bare mask only p50 / p99",
                   "e2e p50 first → last third", "node CPU", "node RSS MB"):  # fmt: skip
        table.add_column(column, justify="right" if column != "phase" else "left")
    for result in results:  # the counters cover the warm-up too: the ratio is over the whole phase
        offered, published = result["offered"], result["published"]
        infos = result["infos"]
        e2e = np.percentile([i.end_to_end_ms for i in infos], [50, 99])
        scenario = Scenario.from_dict(result["scenario"])
        rebuild = _Bundles(scenario, probe)
        bundles = [{Modality(m): rebuild.sample(Modality(m), t.sec * 10**9 + t.nanosec, result["start"])
                    for m, t in zip(i.modalities_used, i.modality_stamps)} for i in infos]  # fmt: skip
        paced = np.percentile(_bare_forward_ms(engine, perception, bundles, 1.0 / result["rate"]), [50, 99])
        back_to_back = np.percentile(_bare_forward_ms(engine, perception, bundles), [50, 99])
        mask_only = np.percentile(_bare_forward_ms(engine, perception, bundles, 1.0 / result["rate"], mask_only=True), [50, 99])
        thirds = np.array_split([i.end_to_end_ms for i in infos], 3)
        table.add_row(result["name"], f"{result['rate']:.1f}", f"{published}/{offered} = {published / max(offered, 1):.3f}",
                      f"{e2e[0]:.1f} / {e2e[1]:.1f}", f"{np.median([i.inference_ms for i in infos]):.1f}",
                      f"{paced[0]:.1f} / {paced[1]:.1f}", f"{e2e[0] / paced[0]:.3f} / {e2e[1] / paced[1]:.3f}",
                      f"{back_to_back[0]:.1f} / {back_to_back[1]:.1f}",
                      f"{e2e[0] / back_to_back[0]:.3f} / {e2e[1] / back_to_back[1]:.3f}",
                      f"{mask_only[0]:.1f} / {mask_only[1]:.1f}", f"{e2e[0] / mask_only[0]:.3f} / {e2e[1] / mask_only[1]:.3f}",
                      f"{np.median(thirds[0]):.0f} → {np.median(thirds[-1]):.0f}", f"{100 * result['cpu']:.0f} %",
                      f"{result['rss_mb']:.0f}")  # fmt: skip
    console.print(table)
    console.print("targets: e2e ÷ bare ≤ 1.15 at p50 and p99 in the latency phase (bare: the same bundles' forward in "
                  "this process, one per bundle period as the node runs it, with the scores; also printed without "
                  "them); masks / bundles offered ≥ 0.95 in the "
                  "model-limited phase; latency flat from the first to the last third (no backlog) in every phase")
    return 0


RIG_RATES = {"camera": 20.0, "depth": 20.0, "lidar": 10.0, "events": 20.0}  # config/any2seg.yaml's nominal rates


def _busy_loops(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy (a plain loop, default priority)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def _loaded_run(args: argparse.Namespace, busy: int, params_file: Path, recorder: PipelineRecorder) -> dict:
    """The node fed the rig's stream with ``busy`` busy loops beside it; ``args.kill`` falls silent half-way."""
    kill_s = args.warmup + args.seconds / 2
    duration = args.warmup + args.seconds
    scenario = {"duration_s": duration, "rate_hz": RIG_RATES, "width": args.width, "height": args.height,
                "lidar_beams": args.lidar_beams, "lidar_azimuths": args.lidar_azimuths, "silent": {args.kill: [[kill_s, duration]]}}  # fmt: skip
    deadline = time.monotonic() + 15
    while recorder.node.count_publishers("/segmentation/info") and time.monotonic() < deadline:
        time.sleep(0.1)  # the previous run's node leaves the graph
    node = NodeProcess(params_file)
    loops: list[subprocess.Popen] = []
    try:
        node.wait_ready(lambda: recorder.node.count_publishers("/segmentation/info") > 0)
        recorder.clear()
        loops = _busy_loops(busy)
        before, wall = node.resources(), time.monotonic()
        stream = subprocess.run([sys.executable, "-m", "modseg_ros.ros.stream", json.dumps(scenario)],
                                capture_output=True, text=True, timeout=duration + 120)  # fmt: skip
        after, wall = node.resources(), time.monotonic() - wall
        if stream.returncode != 0:
            raise RuntimeError(f"the stream failed: {stream.stderr}")
        time.sleep(1.0)
        pipeline = dict(recorder.pipeline)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
        node.stop(timeout_s=30)
    sent = [json.loads(line) for line in stream.stdout.splitlines()]
    start = min(r["stamp"] for r in sent)
    measured_from, killed_at, end = (start + int(t * 1e9) for t in (args.warmup, kill_s, duration))
    stamps = [i.header.stamp.sec * 10**9 + i.header.stamp.nanosec for i in recorder.infos]
    arrivals = recorder.arrivals_ns
    measured = [s for s in stamps if measured_from <= s < end]
    # gaps as a subscriber sees them: from the last mask before the death to each later one
    after_death = [a for a in arrivals if a >= killed_at]
    last_before = max((a for a in arrivals if a < killed_at), default=killed_at)
    gaps = np.diff([last_before, *after_death, max(end, *after_death)]) / 1e9 if after_death else [duration - kill_s]
    alarms: list[str] = []
    level: dict[str, int] = {}
    for msg in recorder.health:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        for sensor in msg.sensors:
            healthy = stamp < end and (sensor.modality != args.kill or stamp < killed_at)  # (every sensor stops at the end)
            if healthy and sensor.level in (1, 2) and level.get(sensor.modality, 0) not in (1, 2):
                alarms.append(f"{sensor.modality} {('WARN', 'ERROR')[sensor.level - 1]} at {(stamp - start) / 1e9:.1f} s: {sensor.reason}")
            level[sensor.modality] = sensor.level
    e2e = [i.end_to_end_ms for i in recorder.infos]
    return {"busy": busy, "masks_per_s": len(measured) / args.seconds, "max_gap_s": float(max(gaps)), "alarms": alarms,
            "e2e_p50": float(np.median(e2e)) if e2e else float("nan"), "cpu": (after.cpu_s - before.cpu_s) / wall,
            "node_late": pipeline.get("node_late", "n/a"), "offered": pipeline.get("bundles_offered", "0"),
            "published": pipeline.get("masks_published", "0")}  # fmt: skip


def run_loaded(args: argparse.Namespace) -> int:
    """``--busy-cores N``: the node idle, then beside N busy loops (see the module docstring)."""
    import os

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    params = {"rig.camera.width": args.width, "rig.camera.height": args.height, "model.path": args.model,
              "model.backend": args.backend, "outputs.diagnostics_rate_hz": 4.0,
              # the camera-events motion check warns on the synthetic street on an idle machine too (measured):
              # its alarms would say nothing about load
              "health.motion_agreement.enabled": False}  # fmt: skip
    if args.threads is not None:
        params["model.threads"] = args.threads
    params.update(_overrides(args.overrides))
    tmp = Path(tempfile.mkdtemp(prefix="modseg-bench-load-"))
    _write_params(params, tmp / "params.yaml")
    recorder = PipelineRecorder(args.viewer)
    try:
        results = [_loaded_run(args, busy, tmp / "params.yaml", recorder) for busy in (0, args.busy_cores)]
    finally:
        recorder.close()
    table = Table(title=f"node under load: {args.width}×{args.height} at 20 Hz, {args.kill} silent from "
                        f"{args.warmup + args.seconds / 2:g} s, {args.seconds:g} s measured, {os.cpu_count()} cores, "
                        f"threads: {args.threads if args.threads is not None else 'model.threads of the parameter file'}")  # fmt: skip
    for column in ("busy loops", "masks/s", "masks / bundles offered", "e2e p50 ms", "node CPU",
                   f"largest mask gap after {args.kill} died s", "alarms on healthy sensors", "node late (diagnostics)"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r["busy"]), f"{r['masks_per_s']:.2f}", f"{r['published']}/{r['offered']}", f"{r['e2e_p50']:.0f}",
                      f"{100 * r['cpu']:.0f} %", f"{r['max_gap_s']:.2f}", str(len(r["alarms"])), str(r["node_late"]))  # fmt: skip
    console.print(table)
    for r in results:
        for alarm in r["alarms"]:
            console.print(f"  {r['busy']} busy: {alarm}")
    idle, loaded = results
    ratio = loaded["masks_per_s"] / idle["masks_per_s"] if idle["masks_per_s"] else float("nan")
    console.print(f"masks/s loaded ÷ idle: {ratio:.2f} (goal ≥ 0.5); largest gap after {args.kill} died, loaded: "
                  f"{loaded['max_gap_s']:.2f} s (goal ≤ 0.3); alarms on healthy sensors, loaded: {len(loaded['alarms'])} (goal 0)")
    return 0
