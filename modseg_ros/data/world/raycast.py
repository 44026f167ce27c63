"""Ray casting against the town with open3d: the static scene once, the moving actors per instant.

A hit reports the triangle; the triangle gives its surface (class id, material), so every label the
world writes comes from the geometry a ray hit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from modseg_ros.core.geometry import Intrinsics, Transform
from modseg_ros.data.world.shapes import MeshGroup
from modseg_ros.data.world.town import Town


@dataclass(frozen=True, eq=False)
class Hits:
    """First hits of a batch of rays (shape ``S`` = the rays' leading shape)."""

    t: np.ndarray  # S float32, distance in units of the ray direction's length; inf on a miss
    surface: np.ndarray  # S int32 index into Town.surfaces; -1 on a miss
    normal: np.ndarray  # S×3 float32 unit normal in the map frame, facing the ray; 0 on a miss

    @property
    def hit(self) -> np.ndarray:
        return self.surface >= 0


class _Scene:
    """One open3d scene built from a mesh group, with the surface index of each triangle."""

    def __init__(self, group: MeshGroup) -> None:
        vertices, triangles, self.surface_of_triangle = group.merged()
        self.scene = o3d.t.geometry.RaycastingScene()
        self.empty = len(triangles) == 0
        if not self.empty:
            self.scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(triangles.astype(np.uint32)))

    def cast(self, rays: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = rays.shape[0]
        if self.empty:
            return np.full(n, np.inf, np.float32), np.full(n, -1, np.int32), np.zeros((n, 3), np.float32)
        result = self.scene.cast_rays(o3d.core.Tensor(rays), nthreads=threads)
        t = result["t_hit"].numpy()
        hit = np.isfinite(t)
        prim = result["primitive_ids"].numpy()
        surface = np.where(hit, self.surface_of_triangle[np.where(hit, prim, 0).astype(np.int64)], -1).astype(np.int32)
        return t, surface, result["primitive_normals"].numpy()  # writable views that keep the tensors alive

    def occluded(self, rays: np.ndarray, threads: int) -> np.ndarray:
        if self.empty:
            return np.zeros(rays.shape[0], bool)
        return self.scene.test_occlusions(o3d.core.Tensor(rays), tnear=0.0, tfar=np.inf, nthreads=threads).numpy()


class WorldCaster:
    """Casts rays into the town at a given instant (static scene plus the actors at that time)."""

    def __init__(self, town: Town, threads: int = 0) -> None:
        self.town = town
        self.threads = threads
        self._static = _Scene(town.static)
        self._dynamic: dict[int, tuple[_Scene, np.ndarray]] = {}

    def _actors_at(self, t: float) -> tuple[_Scene, np.ndarray]:
        key = int(round(t * 1e9))
        if key not in self._dynamic:
            if len(self._dynamic) > 16:  # times only move forward; keep the few most recent
                self._dynamic.pop(next(iter(self._dynamic)))
            group, bounds = self.town.actor_meshes(t)
            self._dynamic[key] = (_Scene(group), bounds)
        return self._dynamic[key]

    def actor_mask(self, intr: Intrinsics, map_from_optical: Transform, t: float) -> np.ndarray:
        """H×W: pixels of a pinhole camera whose rays may hit an actor (projected actor boxes).

        Rays outside the mask skip the actor scene, which costs as much per ray as the town."""
        _, bounds = self._actors_at(t)
        mask = np.zeros((intr.height, intr.width), bool)
        if len(bounds) == 0:
            return mask
        corners = np.stack([np.stack([bounds[:, i >> 2 & 1, 0], bounds[:, i >> 1 & 1, 1], bounds[:, i & 1, 2]], -1)
                            for i in range(8)], 1)  # A×8×3  # fmt: skip
        cam = map_from_optical.inverse().apply(corners.reshape(-1, 3)).reshape(-1, 8, 3)
        z = cam[..., 2]
        in_front = z.max(1) > 0.05
        straddling = in_front & (z.min(1) <= 0.05)
        if straddling.any():  # partly behind the camera: its projection is unbounded, take every ray
            mask[:] = True
            return mask
        cam = cam[in_front]
        u = intr.fx * cam[..., 0] / cam[..., 2] + intr.cx
        v = intr.fy * cam[..., 1] / cam[..., 2] + intr.cy
        u0 = np.clip(np.floor(u.min(1)) - 1, 0, intr.width).astype(int)
        u1 = np.clip(np.ceil(u.max(1)) + 1, 0, intr.width).astype(int)
        v0 = np.clip(np.floor(v.min(1)) - 1, 0, intr.height).astype(int)
        v1 = np.clip(np.ceil(v.max(1)) + 1, 0, intr.height).astype(int)
        for a, b, c, d in zip(u0.tolist(), u1.tolist(), v0.tolist(), v1.tolist()):
            mask[c:d, a:b] = True
        return mask

    def cast(self, origins: np.ndarray, directions: np.ndarray, t: float, candidates: np.ndarray | None = None) -> Hits:
        """Rays given as origins and directions (shape S×3 each, map frame) at world time ``t``.

        ``candidates`` (shape S, optional) limits the actor scene to the rays that may hit an actor."""
        shape = directions.shape[:-1]
        rays = np.empty((int(np.prod(shape)), 6), np.float32)
        rays[:, :3] = origins.reshape(-1, 3)
        rays[:, 3:] = directions.reshape(-1, 3)
        t_hit, surface, normal = self._static.cast(rays, self.threads)
        actors, _ = self._actors_at(t)
        idx = np.arange(len(rays)) if candidates is None else np.flatnonzero(candidates.reshape(-1))
        if len(idx):
            t_d, surf_d, n_d = actors.cast(rays[idx], self.threads)
            closer = t_d < t_hit[idx]
            sel = idx[closer]
            t_hit[sel], surface[sel], normal[sel] = t_d[closer], surf_d[closer], n_d[closer]
        # face the ray: the sensors see the side the ray came from
        flip = np.einsum("ij,ij->i", normal, rays[:, 3:]) > 0
        normal[flip] *= -1.0
        normal[surface < 0] = 0.0
        return Hits(t_hit.reshape(shape).astype(np.float32), surface.reshape(shape), normal.reshape(*shape, 3))

    def occluded(self, origins: np.ndarray, directions: np.ndarray, t: float) -> np.ndarray:
        """Whether anything lies along each ray (shadow rays); shape S."""
        shape = directions.shape[:-1]
        rays = np.empty((int(np.prod(shape)), 6), np.float32)
        rays[:, :3] = origins.reshape(-1, 3)
        rays[:, 3:] = directions.reshape(-1, 3)
        blocked = self._static.occluded(rays, self.threads) | self._actors_at(t)[0].occluded(rays, self.threads)
        return blocked.reshape(shape)
