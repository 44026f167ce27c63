"""The rig in the town: what each sensor measures at a given world time.

``Simulator`` owns the ray caster, the event emulator's state and a small cache of renders, so
that sensors sharing a pose and intrinsics (the default rig's camera, depth and event cameras)
share one ray cast per instant.
"""
from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import TypeVar

import numpy as np

from modseg_ros.core.geometry import Intrinsics, Rig, Transform
from modseg_ros.core.types import CameraFrame, DepthFrame, EventPacket, Modality, PointCloud
from modseg_ros.data.world import sensors
from modseg_ros.data.world.conditions import Condition
from modseg_ros.data.world.raycast import Hits, WorldCaster
from modseg_ros.data.world.sensors import DepthModel, EventCamera, EventModel, LidarModel, LidarScan
from modseg_ros.data.world.town import Town

NS = 1_000_000_000
T = TypeVar("T")


@dataclass(frozen=True)
class SensorModels:
    lidar: LidarModel = field(default_factory=LidarModel)
    depth: DepthModel = field(default_factory=DepthModel)
    events: EventModel = field(default_factory=EventModel)

    def to_dict(self) -> dict:
        return {"lidar": self.lidar.to_dict(), "depth": self.depth.to_dict(), "events": self.events.to_dict()}


@dataclass(frozen=True, eq=False)
class _Render:
    hits: Hits
    radiance: np.ndarray | None  # H×W×3 linear RGB (None when only geometry was needed)


@dataclass(frozen=True, eq=False)
class CameraShot:
    frame: CameraFrame
    labels: np.ndarray  # H×W uint8 DELIVER ids (Sky where rays escape)


class Stopwatch:
    """Wall time per named stage, for the benchmark (``modseg bench world``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += perf_counter() - start


class _NoStopwatch:
    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        yield


def scaled_rig(rig: Rig, width: int | None, height: int | None) -> Rig:
    """The rig with every camera-type sensor's resolution scaled like the camera's (same fields of view)."""
    if not width and not height:
        return rig
    cam = rig.camera
    w = int(width or round(cam.width * height / cam.height))
    h = int(height or round(cam.height * width / cam.width))
    intrinsics = {m: i.scaled(max(1, round(i.width * w / cam.width)), max(1, round(i.height * h / cam.height)))
                  for m, i in rig.intrinsics.items()}  # fmt: skip
    return Rig(cam.scaled(w, h), rig.base_from, intrinsics, rig.frame_ids)


class Simulator:
    """Samples the four sensors of ``rig`` in ``town`` under ``condition``; deterministic given ``seed``."""

    def __init__(self, town: Town, condition: Condition, rig: Rig, models: SensorModels = SensorModels(),
                 seed: int = 0, threads: int = 0, stopwatch: Stopwatch | None = None) -> None:
        self.town = town
        self.timed = stopwatch or _NoStopwatch()
        self.condition = condition
        self.rig = rig
        self.models = models
        self.seed = seed
        workers = threads or os.cpu_count() or 1
        # one ray-casting thread per band when the bands run in parallel
        self.caster = WorldCaster(town, threads=1 if workers > 1 else threads)
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="world") if workers > 1 else None
        self.table = sensors.SurfaceTable.of(town)
        self._renders: dict[tuple, _Render] = {}
        self._ray_lengths: dict[tuple, np.ndarray] = {}
        ev = rig.intrinsics_of(Modality.EVENTS)
        self.event_camera = EventCamera(models.events, ev.width, ev.height, seed=seed * 7 + 3)

    # --- shared rendering ----------------------------------------------------------------------

    def base_pose(self, t: float) -> Transform:
        return self.town.ego.pose(t)

    def sensor_pose(self, modality: Modality, t: float) -> Transform:
        """T_map_from_<sensor frame> at world time t."""
        return self.base_pose(t) @ self.rig.base_from[modality]

    def _geometry_key(self, modality: Modality) -> tuple:
        intr = self.rig.intrinsics_of(modality)
        return (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy, self.rig.base_from[modality].matrix.tobytes())

    def _render(self, modality: Modality, t: float, shade: bool) -> _Render:
        key = (self._geometry_key(modality), int(round(t * NS)))
        cached = self._renders.get(key)
        if cached is not None and (cached.radiance is not None or not shade):
            return cached
        intr: Intrinsics = self.rig.intrinsics_of(modality)
        pose = self.sensor_pose(modality, t)
        origins, dirs = sensors.camera_rays(intr, pose)
        with self.timed("cast"):
            if cached is not None:
                hits = cached.hits
            else:
                mask = self.caster.actor_mask(intr, pose, t)  # also builds the actor scene, once
                parts = self._in_bands(intr.height, lambda b: self.caster.cast(origins[b], dirs[b], t, candidates=mask[b]))
                hits = Hits(*(np.concatenate([getattr(h, f) for h in parts]) for f in ("t", "surface", "normal")))
        radiance = None
        if shade:
            with self.timed("shade"):
                lights = sensors.lights_at(self.town, self.base_pose(t), self.condition.night)
                ray_length = self._ray_length(intr)
                radiance = np.concatenate(self._in_bands(intr.height, lambda b: sensors.shade(
                    self.table, self.caster, self.condition, Hits(hits.t[b], hits.surface[b], hits.normal[b]),
                    pose.translation, dirs[b], ray_length[b], t, lights)))  # fmt: skip
                if self.condition.rain > 0:
                    radiance = radiance + sensors.rain_streaks(intr.height, intr.width, t, self.condition.rain)[..., None]
        render = _Render(hits, radiance)
        if len(self._renders) >= 8:
            self._renders.pop(next(iter(self._renders)))
        self._renders[key] = render
        return render

    def _in_bands(self, rows: int, job: Callable[[slice], T]) -> list[T]:
        """``job`` over horizontal bands of the image, on the worker threads when there are several
        (numpy and open3d release the GIL). Each pixel's value does not depend on the banding."""
        if self._pool is None:
            return [job(slice(None))]
        edges = np.linspace(0, rows, self._workers + 1).round().astype(int).tolist()
        bands = [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        return [future.result() for future in [self._pool.submit(job, band) for band in bands]]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _ray_length(self, intr: Intrinsics) -> np.ndarray:
        """|direction| of each pixel's ray (z = 1 in the camera frame), per intrinsics."""
        key = (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)
        if key not in self._ray_lengths:
            self._ray_lengths[key] = np.linalg.norm(intr.pixel_rays(), axis=-1).astype(np.float32)
        return self._ray_lengths[key]

    def _rng(self, modality: Modality, t: float) -> np.random.Generator:
        return np.random.default_rng([self.seed, list(Modality).index(modality), int(round(t * 1e6))])

    # --- sensors --------------------------------------------------------------------------------

    def camera(self, t: float) -> CameraShot:
        render = self._render(Modality.CAMERA, t, shade=True)
        with self.timed("camera"):
            image = sensors.tone_map(render.radiance, self.condition.exposure, self.condition.noise, self._rng(Modality.CAMERA, t))
            labels = sensors.labels_from_hits(render.hits, self.table.class_id)
        return CameraShot(CameraFrame(image), labels)

    def depth(self, t: float) -> DepthFrame:
        render = self._render(Modality.DEPTH, t, shade=False)
        with self.timed("depth"):
            return DepthFrame(self.models.depth.measure(render.hits, self._rng(Modality.DEPTH, t)))

    def lidar(self, t: float) -> LidarScan:
        pose = self.sensor_pose(Modality.LIDAR, t)
        with self.timed("lidar"):
            return sensors.lidar_scan(self.models.lidar, self.caster, self.table, self.condition, pose, t, self._rng(Modality.LIDAR, t))

    def lidar_cloud(self, scan: LidarScan) -> PointCloud:
        return PointCloud(scan.points, scan.intensity, scan.ring)

    def event_luminance(self, t: float) -> np.ndarray:
        """Linear luminance the event camera sees at t (H×W on its own grid, before any log)."""
        return sensors.luminance(self._render(Modality.EVENTS, t, shade=True).radiance)

    def events(self, t_start: float, t_end: float) -> EventPacket:
        """Events in (t_start, t_end], stamped relative to t_end (the packet's header time)."""
        cam = self.event_camera
        start_ns, end_ns = int(round(t_start * NS)), int(round(t_end * NS))
        if cam.reference is None or cam.last_time_ns != start_ns:
            cam.reset(self.event_luminance(t_start), start_ns)
        k = max(self.models.events.subframes, 1)
        chunks = []
        rng = self._rng(Modality.EVENTS, t_end)
        for i in range(1, k + 1):
            t_i = t_start + (t_end - t_start) * i / k
            t_i_ns = end_ns if i == k else int(round(t_i * NS))
            luminance = self.event_luminance(t_i)
            with self.timed("events"):
                chunks.append(cam.step(luminance, t_i_ns, rng))
        x = np.concatenate([c.x for c in chunks])
        y = np.concatenate([c.y for c in chunks])
        t = np.concatenate([c.t_ns for c in chunks]) - end_ns
        p = np.concatenate([c.polarity for c in chunks])
        return EventPacket(x, y, t.astype(np.int64), p, cam.width, cam.height)

    def settings(self) -> dict:
        return {"models": self.models.to_dict(), "condition": self.condition.to_dict()}

