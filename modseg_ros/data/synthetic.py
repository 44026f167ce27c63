"""A small analytic street for tests and benchmarks: all four modalities of one consistent scene.

The ego vehicle drives along +x on a road between two walls (planes y = ±``half_width``, up to
``wall_height``) under an open sky. Each sensor ray-casts the same three planes through the rig, so
camera, depth, LiDAR and events agree geometrically; every frame carries fresh sensor noise, like
real sensors (so a frozen-payload check never fires on it). Deterministic in (seed, time).

This is generated content for exercising the node's plumbing; the embedded driving world (its own
package) is the data to train and evaluate on.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from modseg_ros.core.geometry import Rig
from modseg_ros.core.types import CameraFrame, DepthFrame, EventPacket, Modality, PointCloud

_SKY = -1  # surface ids
_GROUND, _LEFT, _RIGHT = 0, 1, 2


@dataclass(frozen=True, eq=False)
class SyntheticStreet:
    rig: Rig
    seed: int = 0
    speed_mps: float = 8.0
    half_width_m: float = 8.0
    wall_height_m: float = 6.0
    max_range_m: float = 100.0
    lidar_rings: int = 16
    lidar_azimuths: int = 512

    def _rng(self, t_ns: int, modality: Modality) -> np.random.Generator:
        return np.random.default_rng([self.seed, t_ns, list(Modality).index(modality)])

    def _cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays in base_link -> (distance along the ray, surface id); inf / _SKY where nothing is hit."""
        best = np.full(dirs.shape[:-1], np.inf)
        surface = np.full(dirs.shape[:-1], _SKY)
        with np.errstate(divide="ignore", invalid="ignore"):
            candidates = (
                (_GROUND, -origins[..., 2] / dirs[..., 2]),
                (_LEFT, (self.half_width_m - origins[..., 1]) / dirs[..., 1]),
                (_RIGHT, (-self.half_width_m - origins[..., 1]) / dirs[..., 1]),
            )
            for sid, dist in candidates:
                hit = origins + dirs * np.where(np.isfinite(dist), dist, 0)[..., None]
                ok = np.isfinite(dist) & (dist > 0.05) & (dist < self.max_range_m) & (dist < best)
                if sid != _GROUND:
                    ok &= (hit[..., 2] >= 0) & (hit[..., 2] <= self.wall_height_m)
                best = np.where(ok, dist, best)
                surface = np.where(ok, sid, surface)
        return best, surface

    def _texture(self, points: np.ndarray, surface: np.ndarray, t_ns: int) -> np.ndarray:
        """Grey level 0..1 of world points (the world moves by -x as the ego drives)."""
        x = points[..., 0] + self.speed_mps * t_ns / 1e9
        y, z = points[..., 1], points[..., 2]
        lane = (np.abs(y) < 0.12) & (np.mod(x, 6.0) < 3.0)
        ground = np.where(lane, 0.85, 0.35 + 0.05 * np.sin(x * 1.7) * np.cos(y * 2.3))
        bricks = 0.45 + 0.15 * ((np.mod(np.floor(x / 0.8) + np.floor(z / 0.4), 2.0)) - 0.5)
        windows = (np.mod(x, 5.0) < 1.5) & (np.mod(z, 3.0) > 1.2) & (np.mod(z, 3.0) < 2.4)
        wall = np.where(windows, 0.2, bricks)
        return np.where(surface == _GROUND, ground, np.where(surface == _SKY, 0.0, wall))

    def _view(self, modality: Modality) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel of a camera-type sensor: hit point in base_link, surface id, distance, direction.
        The street is invariant along x, so this never changes; only textures move."""
        return self._views[modality]

    @cached_property
    def _views(self) -> dict[Modality, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        views = {}
        for modality in (Modality.CAMERA, Modality.DEPTH, Modality.EVENTS):
            pose = self.rig.base_from[modality]
            dirs = self.rig.intrinsics_of(modality).pixel_rays() @ pose.rotation.T
            dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
            origins = np.broadcast_to(pose.translation, dirs.shape)
            dist, surface = self._cast(origins, dirs)
            points = origins + dirs * np.where(np.isfinite(dist), dist, 0)[..., None]
            views[modality] = (points, surface, dist, dirs)
        return views

    def _grey(self, t_ns: int, modality: Modality = Modality.CAMERA) -> tuple[np.ndarray, np.ndarray]:
        points, surface, _, dirs = self._view(modality)
        grey = self._texture(points, surface, t_ns)
        sky = 0.55 + 0.35 * (1.0 - np.clip(dirs[..., 2] * 3.0, 0.0, 1.0))
        return np.where(surface == _SKY, sky, grey), surface

    def camera(self, t_ns: int) -> CameraFrame:
        grey, surface = self._grey(t_ns)
        tint = np.stack([np.where(surface == _SKY, 0.75, 1.0), np.ones_like(grey),
                         np.where(surface == _SKY, 1.25, np.where(surface == _GROUND, 0.95, 0.85))], axis=-1)  # fmt: skip
        noise = self._rng(t_ns, Modality.CAMERA).normal(0.0, 3.0, grey.shape + (3,))
        image = np.clip(grey[..., None] * tint * 230.0 + 12.0 + noise, 0, 255)
        return CameraFrame(image=image.astype(np.uint8))

    def depth(self, t_ns: int) -> DepthFrame:
        _, _, dist, dirs = self._view(Modality.DEPTH)
        optical_axis = self.rig.base_from[Modality.DEPTH].rotation[:, 2]
        z = dist * (dirs @ optical_axis)
        z = z * (1.0 + self._rng(t_ns, Modality.DEPTH).normal(0.0, 0.002, z.shape))
        return DepthFrame(depth_m=np.where(np.isfinite(z), z, np.nan).astype(np.float32))

    def lidar(self, t_ns: int) -> PointCloud:
        pose = self.rig.base_from[Modality.LIDAR]
        elevation = np.radians(np.linspace(-15.0, 15.0, self.lidar_rings))[:, None]
        azimuth = np.linspace(-np.pi, np.pi, self.lidar_azimuths, endpoint=False)[None, :]
        local = np.stack(np.broadcast_arrays(np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                             np.sin(elevation)), axis=-1)  # fmt: skip
        dirs = local @ pose.rotation.T
        origins = np.broadcast_to(pose.translation, dirs.shape)
        dist, surface = self._cast(origins, dirs)
        rng = self._rng(t_ns, Modality.LIDAR)
        dist = dist + rng.normal(0.0, 0.01, dist.shape)
        points = np.where(np.isfinite(dist)[..., None], local * np.nan_to_num(dist, posinf=0.0)[..., None], np.nan)
        points = points.astype(np.float32)
        world = origins + dirs * np.where(np.isfinite(dist), dist, 0)[..., None]
        intensity = np.where(surface == _SKY, 0.0, self._texture(world, surface, t_ns)).astype(np.float32)
        ring = np.broadcast_to(np.arange(self.lidar_rings, dtype=np.uint16)[:, None], dist.shape)
        return PointCloud(points=points.reshape(-1, 3), intensity=intensity.reshape(-1), ring=ring.reshape(-1).copy())

    def events(self, t_ns: int, window_ns: int, threshold: float = 0.15) -> EventPacket:
        """Brightness changes over the ``window_ns`` before ``t_ns`` on the event camera's grid."""
        now, _ = self._grey(t_ns, Modality.EVENTS)
        before, _ = self._grey(t_ns - window_ns, Modality.EVENTS)
        change = np.log1p(now * 4.0) - np.log1p(before * 4.0)
        rng = self._rng(t_ns, Modality.EVENTS)
        v, u = np.nonzero(np.abs(change) > threshold)
        noise = rng.random(now.shape) < 2e-4  # background activity
        nv, nu = np.nonzero(noise)
        y = np.concatenate([v, nv]).astype(np.uint16)
        x = np.concatenate([u, nu]).astype(np.uint16)
        polarity = np.concatenate([np.sign(change[v, u]), rng.choice([-1, 1], len(nv))]).astype(np.int8)
        t_rel = -rng.integers(0, window_ns, len(x), dtype=np.int64)
        intr = self.rig.intrinsics_of(Modality.EVENTS)
        return EventPacket(x=x, y=y, t_ns=t_rel, polarity=polarity, width=intr.width, height=intr.height)
