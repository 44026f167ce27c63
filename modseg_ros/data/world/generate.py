"""``modseg world``: generate a DELIVER-layout dataset or a rosbag2 bag from the embedded world.

Every random choice derives from (seed, split, sequence index), so the same arguments give
byte-identical outputs, whatever the number of worker processes.
"""
from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from modseg_ros.core.config import dump_yaml, load_parameters, rig_from_parameters
from modseg_ros.core.encoding import EncodingConfig, encode_payload
from modseg_ros.core.geometry import Rig
from modseg_ros.core.palette import CLASSES, NUM_CLASSES
from modseg_ros.core.types import MODALITIES, Modality, Payload
from modseg_ros.data.failures import (
    DELIVER_CASES,
    Failure,
    FailureInjector,
    active_failures,
    deliver_cases,
    format_failure_spec,
    make_failure,
)
from modseg_ros.data.world import deliver_writer
from modseg_ros.data.world.bag_writer import TOPIC_PRESETS, BagRecorder, BagStyle
from modseg_ros.data.world.conditions import CONDITIONS, make_condition
from modseg_ros.data.world.drive import DEFAULT_CLOCKS, NS, SensorClock
from modseg_ros.data.world.simulator import SensorModels, Simulator, scaled_rig
from modseg_ros.data.world.town import TownParams, generate_town
from modseg_ros.errors import ConfigError
from modseg_ros.paths import config_file

SPLITS = ("train", "val", "test")
FORMATS = ("deliver", "bag")
CAMERA_RATE_HZ = DEFAULT_CLOCKS[Modality.CAMERA].rate_hz  # saved frames and bag length count camera periods
# CARLA in synchronous mode at 20 Hz: every sensor samples at the tick and carries its stamp
# (simulation time since the episode began, here 5 s), the LiDAR turns once per tick; the bag is
# recorded on simulation time (ros2 bag record --use-sim-time), a few ms after each tick.
CARLA_CLOCKS = {m: SensorClock(20.0, 0.0, 0.0, 0.0, latency) for m, latency in
                zip(MODALITIES, (0.008, 0.010, 0.012, 0.006))}  # fmt: skip
CARLA_START_NS = 5 * NS

Progress = Callable[[int], None]  # called with the number of frames just finished


@dataclass(frozen=True)
class WorldOptions:
    out: Path
    format: str = "deliver"
    frames: int = 100
    seed: int = 0
    conditions: tuple[str, ...] = CONDITIONS
    failures: tuple[Failure, ...] = ()
    split: str = "train"
    width: int | None = None  # default: the rig's camera (config/any2seg.yaml)
    height: int | None = None
    sequence_frames: int = 20  # deliver: frames per sequence (one town, one condition)
    frame_stride: int = 5  # deliver: camera periods between saved frames
    corner_fraction: float = 0.35  # deliver: share of sequences with a DELIVER corner case
    models: SensorModels = field(default_factory=SensorModels)
    depth_encoding: str = "32FC1"  # bag: 32FC1 metres or 16UC1 millimetres
    start_ns: int = 1_767_225_600 * 1_000_000_000  # bag: 2026-01-01T00:00:00Z, fixed for reproducibility
    threads: int = 0  # open3d ray-casting threads per process (0 = all)
    workers: int = 1  # deliver: sequences rendered in parallel processes
    overwrite: bool = False
    parameters: Path | None = None  # parameter file with the rig (default: config/<topic_preset>.yaml)
    topic_preset: str = "world"  # bag: world (the world's topics) | carla (the carla-ros-bridge's, config/carla.yaml)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format: unknown format '{self.format}' (choose from {', '.join(FORMATS)})")
        if self.frames <= 0:
            raise ConfigError(f"--frames must be positive, got {self.frames}")
        if self.split not in SPLITS:
            raise ConfigError(f"--split: unknown split '{self.split}' (choose from {', '.join(SPLITS)})")
        for name in self.conditions:
            if name not in CONDITIONS:
                raise ConfigError(f"--conditions: unknown condition '{name}' (choose from {', '.join(CONDITIONS)})")
        if not self.conditions:
            raise ConfigError("--conditions: give at least one condition")
        for key, value in (("--width", self.width), ("--height", self.height)):
            if value is not None and value < 8:
                raise ConfigError(f"{key} must be at least 8 pixels, got {value}")
        if self.sequence_frames <= 0 or self.frame_stride <= 0:
            raise ConfigError("--sequence-frames and --frame-stride must be positive")
        if not 0.0 <= self.corner_fraction <= 1.0:
            raise ConfigError(f"--corner-fraction must be within 0..1, got {self.corner_fraction}")
        if self.depth_encoding not in ("32FC1", "16UC1"):
            raise ConfigError(f"--depth-encoding must be 32FC1 or 16UC1, got {self.depth_encoding}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.topic_preset not in TOPIC_PRESETS:
            raise ConfigError(f"--topic-preset must be one of {', '.join(TOPIC_PRESETS)}, got '{self.topic_preset}'")
        if self.topic_preset != "world" and self.format != "bag":
            raise ConfigError("--topic-preset applies to --format bag")

    def parameter_file(self) -> Path:
        return self.parameters or config_file("carla.yaml" if self.topic_preset == "carla" else "any2seg.yaml")

    def rig(self) -> Rig:
        return scaled_rig(rig_from_parameters(load_parameters(self.parameter_file())), self.width, self.height)

    def bag_style(self) -> BagStyle:
        if self.topic_preset == "carla":
            from modseg_ros.core.config import NodeConfig

            return BagStyle.carla(NodeConfig.load(self.parameter_file()))
        return BagStyle()


@dataclass(frozen=True)
class SequencePlan:
    index: int
    name: str
    seed: int  # town, condition and sensor noise of this sequence
    condition: str
    failures: tuple[Failure, ...]
    times: tuple[float, ...]  # world times of the saved frames
    first_id: int  # frame ids are numbered through the split


@dataclass
class Summary:
    frames: int = 0
    sequences: int = 0
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES + 1, np.int64))  # last = ignore
    corner_frames: dict[str, int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def add(self, other: Summary) -> None:
        self.frames += other.frames
        self.sequences += other.sequences
        self.class_pixels += other.class_pixels
        for k, v in other.corner_frames.items():
            self.corner_frames[k] = self.corner_frames.get(k, 0) + v
        self.paths += other.paths

    def class_share(self) -> dict[str, float]:
        total = max(int(self.class_pixels.sum()), 1)
        return {name: round(float(self.class_pixels[i]) / total, 5) for i, name in enumerate(CLASSES)}


def derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def prepare_output(out: Path, overwrite: bool, targets: Sequence[Path]) -> None:
    """Create ``out`` (clear message if impossible); refuse to overwrite ``targets`` unless asked."""
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise ConfigError(f"--out {out}: {existing[0]} already exists (pass --overwrite to replace it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the directory: {err.strerror}") from None
    if not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory")
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: directory is not writable")
    for t in existing:
        shutil.rmtree(t) if t.is_dir() else t.unlink()


# --- DELIVER layout --------------------------------------------------------------------------------


def corner_failure(case: str, duration_s: float, rng: np.random.Generator) -> Failure:
    """A DELIVER corner case over a whole sequence, with its strength drawn from ``rng``."""
    modality, kind = DELIVER_CASES[case]
    params: dict[str, float] = {
        "motionblur": {"length": float(rng.uniform(8, 28)), "angle": float(rng.choice([0.0, rng.uniform(-30, 30)]))},
        "overexposure": {"gain": float(rng.uniform(4.0, 12.0))},
        "underexposure": {"gain": float(rng.uniform(0.03, 0.12))},
        "lidarjitter": {"sigma": float(rng.uniform(0.08, 0.3))},
        "eventlowres": {"factor": float(rng.choice([4, 8]))},
    }[case]
    return make_failure(modality, kind, 0.0, duration_s + 1.0, params)


def plan_deliver(options: WorldOptions) -> list[SequencePlan]:
    n_seq = math.ceil(options.frames / options.sequence_frames)
    split_code = SPLITS.index(options.split)
    plans, first = [], 0
    for i in range(n_seq):
        count = min(options.sequence_frames, options.frames - first)
        seed = derive_seed(options.seed, split_code, i)
        rng = np.random.default_rng(seed)
        condition = options.conditions[i % len(options.conditions)]
        t0 = 1.0 + float(rng.uniform(0.0, 2.0))
        times = tuple(t0 + j * options.frame_stride / CAMERA_RATE_HZ for j in range(count))
        failures = list(options.failures)
        # no split or condition word in the name: DELIVER's loader selects cases by substring
        # ('rain' is in 'train'), so only corner-case tokens may appear in a sequence folder
        name = f"town{options.seed}-{options.split[0]}{i:04d}"
        if rng.random() < options.corner_fraction:
            case = str(rng.choice(sorted(DELIVER_CASES)))
            failures.append(corner_failure(case, times[-1], rng))
        plans.append(SequencePlan(i, name, seed, condition, tuple(failures), times, first))
        first += count
    return plans


def _deliver_targets(options: WorldOptions) -> list[Path]:
    return [options.out / folder / c / options.split for folder in deliver_writer.FOLDERS for c in options.conditions]


def render_sequence(plan: SequencePlan, options: WorldOptions, progress: Progress | None = None) -> Summary:
    """Render and write one DELIVER sequence."""
    rig = options.rig()
    duration = plan.times[-1] + 1.0
    town = generate_town(plan.seed, TownParams(duration_s=duration))
    condition = make_condition(plan.condition, np.random.default_rng(plan.seed + 1))
    sim = Simulator(town, condition, rig, options.models, seed=plan.seed, threads=options.threads)
    injector = FailureInjector(plan.failures, seed=plan.seed)
    summary = Summary(sequences=1)
    # PNG compression (zlib releases the GIL) overlaps with rendering the next frame
    with closing(sim), ThreadPoolExecutor(1, thread_name_prefix="png") as files:
        _render_frames(plan, options, sim, injector, rig, summary, progress, files)
    return summary


def _render_frames(plan: SequencePlan, options: WorldOptions, sim: Simulator, injector: FailureInjector, rig: Rig,
                   summary: Summary, progress: Progress | None, files: ThreadPoolExecutor) -> None:
    enc = EncodingConfig()
    dt = 1.0 / CAMERA_RATE_HZ
    pending: list[Future] = []
    for j, t in enumerate(plan.times):
        shot = sim.camera(t)
        payloads: dict[Modality, Payload] = {
            Modality.CAMERA: shot.frame,
            Modality.DEPTH: sim.depth(t),
            Modality.LIDAR: sim.lidar_cloud(sim.lidar(t)),
            Modality.EVENTS: sim.events(t - dt, t),
        }
        encoded = {}
        for modality in MODALITIES:
            delivered = injector.process(modality, t, 0, payloads[modality])
            if delivered is None:  # silent: nothing measured
                encoded[modality] = np.zeros((rig.camera.height, rig.camera.width, 3), np.uint8)
            else:
                encoded[modality] = encode_payload(modality, delivered[1], rig, enc)
        cases = deliver_cases(f for m in MODALITIES for f in active_failures(plan.failures, m, t))
        sequence = "_".join([plan.name, *cases])
        frame_id = f"{plan.first_id + j:06d}"
        pending.append(files.submit(deliver_writer.write_frame, options.out, plan.condition, options.split, sequence,
                                    frame_id, encoded, shot.labels))  # fmt: skip
        while len(pending) > 1:  # at most one frame waiting, so memory stays flat
            pending.pop(0).result()
        summary.frames += 1
        summary.class_pixels += np.bincount(np.minimum(shot.labels.ravel(), NUM_CLASSES), minlength=NUM_CLASSES + 1)
        for case in cases:
            summary.corner_frames[case] = summary.corner_frames.get(case, 0) + 1
        if progress is not None:
            progress(1)
    for future in pending:
        future.result()


def generate_deliver(options: WorldOptions, progress: Progress | None = None) -> Summary:
    options.validate()
    prepare_output(options.out, options.overwrite, _deliver_targets(options))
    rig = options.rig()
    plans = plan_deliver(options)
    summary = Summary()
    if options.workers == 1:
        for plan in plans:
            summary.add(render_sequence(plan, options, progress))
    else:
        # each worker gets an equal share of the cores for ray casting
        threads = options.threads or max(1, (os.cpu_count() or 1) // options.workers)
        worker_options = replace(options, threads=threads)
        with ProcessPoolExecutor(options.workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(render_sequence, plan, worker_options): plan for plan in plans}
            for future in as_completed(futures):
                summary.add(future.result())
                if progress is not None:
                    progress(len(futures[future].times))
    deliver_writer.update_meta(options.out, _common_meta(options, rig), options.split, _run_meta(options, plans, summary))
    return summary


def _common_meta(options: WorldOptions, rig: Rig) -> dict[str, Any]:
    return {
        "generator": "modseg_ros embedded world (modseg world)",
        "layout": "DELIVER: {img,depth,event,lidar,semantic}/<condition>/<split>/<sequence>/<id>_<modality>_front.png",
        "semantic": "channel 0 = DELIVER id + 1; 0 = unlabelled",
        "classes": list(CLASSES),
        "encoding": EncodingConfig().to_dict(),
        "rig": rig_dict(rig),
        "sensors": options.models.to_dict(),
    }


def _run_meta(options: WorldOptions, plans: Sequence[SequencePlan], summary: Summary) -> dict[str, Any]:
    return {
        "seed": options.seed,
        "frames": summary.frames,
        "conditions": list(options.conditions),
        "failures": [str(f) for f in options.failures],
        "sequence_frames": options.sequence_frames,
        "frame_stride": options.frame_stride,
        "corner_fraction": options.corner_fraction,
        "corner_frames": dict(sorted(summary.corner_frames.items())),
        "sequences": [{"name": p.name, "condition": p.condition, "seed": p.seed, "frames": len(p.times),
                       "failures": [str(f) for f in p.failures if f not in options.failures]} for p in plans],  # fmt: skip
        "class_pixel_share": summary.class_share(),
    }


def rig_dict(rig: Rig) -> dict[str, Any]:
    out: dict[str, Any] = {"camera": rig.camera.to_dict()}
    for m in MODALITIES:
        entry: dict[str, Any] = {"frame_id": rig.frame_ids.get(m, m.value), "base_from": rig.base_from[m].to_dict()}
        if m is not Modality.LIDAR:
            entry["intrinsics"] = rig.intrinsics_of(m).to_dict()
        out[m.value] = entry
    return out


# --- rosbag2 ---------------------------------------------------------------------------------------


def sensor_schedule(clocks: Mapping[Modality, SensorClock], duration_s: float) -> list[tuple[float, Modality]]:
    """(world time, modality) of every sample of every sensor in [0, duration), in time order."""
    samples = [(float(t), m) for m, clock in clocks.items() for t in clock.sample_times(duration_s)]
    return sorted(samples, key=lambda s: (s[0], MODALITIES.index(s[1])))


def generate_bag(options: WorldOptions, progress: Progress | None = None) -> Summary:
    """Drive through one town under one condition for ``options.frames`` camera periods.

    Every sensor samples on its own clock; the failure schedule acts on what each delivers
    (content, stamp or silence) through the same FailureInjector as the bag player's. Ground truth
    is always recorded, with the stamp of the message it belongs to (the nominal stamp when the
    sensor is silent)."""
    options.validate()
    bag = options.out
    prepare_output(bag.parent, False, [])
    if bag.exists():
        if not options.overwrite:
            raise ConfigError(f"--out {bag} already exists (pass --overwrite to replace it)")
        shutil.rmtree(bag) if bag.is_dir() else bag.unlink()
    rig = options.rig()
    seed = derive_seed(options.seed, 1000, 0)
    duration = options.frames / CAMERA_RATE_HZ
    town = generate_town(seed, TownParams(duration_s=duration + 1.0))
    condition = make_condition(options.conditions[0], np.random.default_rng(seed + 1))
    sim = Simulator(town, condition, rig, options.models, seed=seed, threads=options.threads)
    injector = FailureInjector(options.failures, seed=seed)
    style = options.bag_style()
    clocks = dict(CARLA_CLOCKS if style.preset == "carla" else DEFAULT_CLOCKS)
    stamp_rng = {m: np.random.default_rng([seed, 17, i]) for i, m in enumerate(MODALITIES)}
    start = CARLA_START_NS if style.preset == "carla" else options.start_ns
    summary = Summary(sequences=1)
    to_ns = lambda t: start + int(round(t * NS))  # noqa: E731  world time -> bag time

    with closing(sim), BagRecorder(bag, rig, options.depth_encoding, style=style) as record:
        record.tf_static(start)
        for t, m in sensor_schedule(clocks, duration):
            log_ns = to_ns(t + clocks[m].latency_s)
            nominal = int(clocks[m].stamps_ns(np.array([t]), start, stamp_rng[m])[0])
            if m is Modality.CAMERA:
                shot = sim.camera(t)
                delivered = injector.process(m, t, nominal, shot.frame)
                if delivered is not None:
                    record.camera(log_ns, *delivered)
                record.labels(log_ns, nominal if delivered is None else delivered[0], shot.labels)
                record.ego_pose(to_ns(t), to_ns(t), sim.base_pose(t))
                summary.frames += 1
                summary.class_pixels += np.bincount(np.minimum(shot.labels.ravel(), NUM_CLASSES), minlength=NUM_CLASSES + 1)
                if progress is not None:
                    progress(1)
            elif m is Modality.DEPTH:
                delivered = injector.process(m, t, nominal, sim.depth(t))
                if delivered is not None:
                    record.depth(log_ns, *delivered)
            elif m is Modality.LIDAR:
                scan = sim.lidar(t)
                delivered = injector.process(m, t, nominal, sim.lidar_cloud(scan))
                if delivered is not None:
                    record.lidar(log_ns, *delivered)
                record.lidar_labels(log_ns, nominal if delivered is None else delivered[0], scan.points, scan.labels)
            else:
                delivered = injector.process(m, t, nominal, sim.events(t - 1.0 / clocks[m].rate_hz, t))
                if delivered is not None:
                    record.events(log_ns, *delivered)
            record.flush(to_ns(t))  # later samples reach the bag after their own sampling time

    sidecar = {
        "generator": "modseg_ros embedded world (modseg world --format bag)",
        "seed": options.seed,
        "town_seed": seed,
        "frames": summary.frames,
        "duration_s": duration,
        "start_ns": start,
        "condition": condition.to_dict(),
        "failures": format_failure_spec(options.failures),
        "failure_schedule": [f.to_dict() for f in options.failures],
        "rig": rig_dict(rig),
        "encoding": EncodingConfig().to_dict(),
        "sensors": options.models.to_dict(),
        "timing": {m.value: clocks[m].to_dict() for m in MODALITIES},
        "depth_encoding": options.depth_encoding,
        "topic_preset": style.preset,
        "topics": style.describe(),
        "class_pixel_share": summary.class_share(),
    }
    (bag / "world.yaml").write_text(dump_yaml(sidecar))
    summary.paths.append(str(bag))
    return summary


def generate(options: WorldOptions, progress: Progress | None = None) -> Summary:
    return generate_bag(options, progress) if options.format == "bag" else generate_deliver(options, progress)

