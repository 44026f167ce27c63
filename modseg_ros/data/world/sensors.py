"""The four sensors of the rig, rendered from ray hits: camera, depth camera, LiDAR, event camera.

- Camera: per-surface albedo times a procedural texture, lit by the sun (with shadows), the sky,
  headlights and street lights at night and emissive lamps; fog attenuates with distance; a tone
  curve, then read and shot noise.
- Depth: the z of the hit in the depth camera's optical frame, noisy, NaN beyond range or on sky.
- LiDAR: a rotating multi-beam scan; intensity from reflectivity and incidence; returns drop out on
  dark, grazing or far surfaces and in fog or rain.
- Events: log-luminance changes between sub-frames, crossing a per-pixel contrast threshold
  (ESIM-style linear interpolation of the crossing times), with a refractory period and background
  noise events.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from modseg_ros.core.geometry import Intrinsics, Transform, rotate_points
from modseg_ros.core.palette import CLASS_ID
from modseg_ros.data.world.conditions import Condition
from modseg_ros.data.world.raycast import Hits, WorldCaster
from modseg_ros.data.world.shapes import Texture
from modseg_ros.data.world.town import Town

SKY = CLASS_ID["Sky"]
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


# --- noise ------------------------------------------------------------------------------------------


def _hash(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Integer lattice coordinates -> uniform floats in [0, 1) (a cheap integer mixing hash)."""
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + np.asarray(seed, np.int64) * 1442695041)
    h = (h ^ (h >> 13)) & 0xFFFFFFFF
    h = (h * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float32) / np.float32(0x1000000)


def _value_noise(x: np.ndarray, y: np.ndarray, seed) -> np.ndarray:
    """Smooth noise in [0, 1): bilinear interpolation of lattice hashes (smoothstep weights)."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


# --- geometry helpers ------------------------------------------------------------------------------


def camera_rays(intr: Intrinsics, map_from_optical: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Ray origins and directions (H×W×3, map frame) with camera-frame z = 1, so t_hit is depth."""
    d_cam = intr.pixel_rays().astype(np.float32)
    dirs = rotate_points(d_cam, map_from_optical.rotation)
    origins = np.broadcast_to(map_from_optical.translation.astype(np.float32), dirs.shape)
    return origins, dirs


def labels_from_hits(hits: Hits, class_of_surface: np.ndarray) -> np.ndarray:
    """Per-ray DELIVER id: the hit surface's class, Sky where the ray escapes."""
    return np.where(hits.hit, class_of_surface[np.maximum(hits.surface, 0)], SKY).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class SurfaceTable:
    """Town.surfaces as arrays for vectorised lookups."""

    class_id: np.ndarray  # S uint8
    albedo: np.ndarray  # S×3 float32
    texture: np.ndarray  # S int32
    reflectivity: np.ndarray  # S float32
    emission: np.ndarray  # S×3 float32
    seed: np.ndarray  # S int64
    anchor: np.ndarray  # S×3 float32

    @classmethod
    def of(cls, town: Town) -> SurfaceTable:
        s = town.surfaces
        return cls(
            np.array([x.class_id for x in s], np.uint8), np.array([x.albedo for x in s], np.float32),
            np.array([int(x.texture) for x in s], np.int32), np.array([x.reflectivity for x in s], np.float32),
            np.array([x.emission for x in s], np.float32), np.array([x.seed for x in s], np.int64),
            np.array([x.anchor for x in s], np.float32),
        )  # fmt: skip


# --- camera ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lights:
    """Light sources other than the sun and the sky at one instant (map frame)."""

    headlights: np.ndarray  # K×3 positions
    headlight_dir: np.ndarray  # 3 unit vector (ego forward, slightly down)
    street: np.ndarray  # L×3 positions of the nearest street lights


def lights_at(town: Town, map_from_base: Transform, night: bool, max_street: int = 8) -> Lights:
    if not night:
        empty = np.zeros((0, 3), np.float32)
        return Lights(empty, np.array([1.0, 0.0, 0.0], np.float32), empty)
    heads = map_from_base.apply(np.array([[3.8, 0.75, 0.7], [3.8, -0.75, 0.7]], np.float32))
    forward = map_from_base.rotation @ np.array([1.0, 0.0, -0.06])
    street = town.lights
    if len(street):
        d = np.linalg.norm(street - map_from_base.translation.astype(np.float32), axis=1)
        street = street[np.argsort(d, kind="stable")[:max_street]]
    return Lights(heads, (forward / np.linalg.norm(forward)).astype(np.float32), street)


def _texture(kind: int, albedo: np.ndarray, p: np.ndarray, n: np.ndarray, dist: np.ndarray, seed: np.ndarray,
             cond: Condition, emission: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Albedo factor (N×3) and emitted radiance (N×3, or None) of one texture kind at hit points p (N×3)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    detail = np.clip(1.6 - dist / 25.0, 0.0, 1.0)  # fine patterns fade out with distance (no aliasing)
    one = np.ones(len(p), np.float32)
    glow = None  # N×3 emitted radiance, for textures that glow
    if kind == Texture.ASPHALT:
        f = 0.85 + 0.3 * _value_noise(x * 0.4, y * 0.4, seed) + 0.15 * detail * (_hash(np.floor(x * 8), np.floor(y * 8), seed) - 0.5)
        if cond.rain > 0:
            f *= 1.0 - 0.35 * cond.rain * _value_noise(x * 0.2, y * 0.2, seed + 7)  # wet patches
        return np.repeat(f[:, None], 3, 1), glow
    if kind in (Texture.PAVING,):
        gx, gy = np.abs(np.mod(x, 0.6) - 0.3), np.abs(np.mod(y, 0.6) - 0.3)
        joint = (np.maximum(gx, gy) > 0.28) * detail
        f = (0.9 + 0.2 * _hash(np.floor(x / 0.6), np.floor(y / 0.6), seed)) * (1 - 0.35 * joint)
        return np.repeat(f[:, None], 3, 1), glow
    if kind == Texture.GRASS:
        v = _value_noise(x * 0.7, y * 0.7, seed)
        fine = detail * (_hash(np.floor(x * 10), np.floor(y * 10), seed) - 0.5)
        f = 0.7 + 0.6 * v + 0.25 * fine
        return np.stack([f * (1.1 - 0.3 * v), f, f * 0.8], 1), glow
    if kind == Texture.LEAVES:
        v = _hash(np.floor(x * 4 + z * 3), np.floor(y * 4 - z * 2), seed)
        f = 0.55 + 0.9 * (0.5 + (v - 0.5) * detail) * (0.6 + 0.4 * np.clip(n[:, 2] + 0.5, 0, 1))
        return np.repeat(f[:, None], 3, 1), glow
    if kind == Texture.BARK:
        f = 0.7 + 0.5 * _hash(np.floor(z * 6), np.floor((x + y) * 6), seed) * detail
        return np.repeat(f[:, None], 3, 1), glow
    if kind in (Texture.FACADE, Texture.BRICK, Texture.PLANKS):
        s = np.where(np.abs(n[:, 0]) > np.abs(n[:, 1]), y, x)  # horizontal coordinate along the wall
        vertical = np.abs(n[:, 2]) < 0.5
        if kind == Texture.PLANKS:
            f = 0.75 + 0.4 * _hash(np.floor(s / 0.15), np.zeros_like(s), seed) * detail
            return np.repeat(f[:, None], 3, 1), glow
        if kind == Texture.BRICK:
            row = np.floor(z / 0.08)
            col = np.floor(s / 0.24 + 0.5 * np.mod(row, 2))
            mortar = ((np.mod(z, 0.08) < 0.012) | (np.mod(s / 0.24 + 0.5 * np.mod(row, 2), 1.0) < 0.05)) * detail * vertical
            f = (0.85 + 0.3 * _hash(col, row, seed) * detail) * (1 + 0.5 * mortar)
            return np.repeat(f[:, None], 3, 1), glow
        # facade: a grid of windows above the ground floor, ground-floor shop windows, floor bands
        seed0 = seed.astype(np.int64)
        spacing = 2.5 + 2.0 * _hash(seed0, np.zeros_like(seed0), 11)
        floor_h = 3.0 + 0.6 * _hash(seed0, np.ones_like(seed0), 12)
        win_w = 0.35 + 0.3 * _hash(seed0, np.full_like(seed0, 2), 13)
        u = np.mod(s / spacing, 1.0)
        w = np.mod(z / floor_h, 1.0)
        storey = np.floor(z / floor_h)
        window = vertical & (np.abs(u - 0.5) < win_w / 2) & (w > 0.3) & (w < 0.85) & (storey >= 1)
        shop = vertical & (storey < 1) & (z > 0.5) & (z < 2.6) & (_hash(np.floor(s / 6.0), seed0, 3) < 0.5)
        glass = window | shop
        band = vertical & (np.abs(w - 0.05) < 0.04) & ~glass
        f = np.ones((len(p), 3), np.float32) * (0.9 + 0.2 * _value_noise(s * 0.3, z * 0.3, seed))[:, None]
        f[band] *= 0.8
        cell = _hash(np.floor(s / spacing), storey, seed0)
        glass_albedo = np.array([0.3, 0.36, 0.48], np.float32) * (0.5 + 0.7 * cell[glass, None])  # sky reflections
        f[glass] = glass_albedo / np.maximum(albedo[glass], 1e-3)
        if cond.night:
            lit = glass & (cell > 0.7)
            glow = np.zeros((len(p), 3), np.float32)
            glow[lit] = np.array([0.5, 0.38, 0.2], np.float32) * (0.3 + cell[lit, None])
        return f, glow
    if kind == Texture.VEHICLE:
        glass = (z > 1.05) & (z < 2.9) & (np.abs(n[:, 2]) < 0.6)
        f = np.ones((len(p), 3), np.float32)
        f[glass] = 0.12
        if cond.night:  # head lamps on the front face, tail lamps on the back (anchor = heading)
            facing = np.einsum("ij,ij->i", n, anchor)
            band = (z > 0.55) & (z < 0.9)
            glow = np.zeros((len(p), 3), np.float32)
            glow[band & (facing > 0.8)] = (2.5, 2.4, 2.1)
            glow[band & (facing < -0.8)] = (1.6, 0.08, 0.05)
        return f, glow
    if kind == Texture.SIGN:
        stripe = (np.abs(np.mod(z * 3.0, 1.0) - 0.5) < 0.12)
        f = np.ones((len(p), 3), np.float32)
        f[stripe] = 3.0
        return f, glow
    if kind == Texture.LAMP:
        glow = emission * (1.0 if cond.night else 0.1)
        return np.ones((len(p), 3), np.float32), glow
    if kind == Texture.SIGNAL:
        lit = np.linalg.norm(p - anchor, axis=1) < 0.13
        glow = np.zeros((len(p), 3), np.float32)
        glow[lit] = emission[lit] * (1.0 if cond.night else 0.5)
        return np.ones((len(p), 3), np.float32), glow
    return np.repeat(one[:, None], 3, 1), glow


def shade(table: SurfaceTable, caster: WorldCaster, cond: Condition, hits: Hits, origin: np.ndarray,
          dirs: np.ndarray, ray_length: np.ndarray, t: float, lights: Lights) -> np.ndarray:
    """Linear RGB radiance (S×3 float32) of a camera's rays (one ``origin``, ``dirs`` S×3 of lengths
    ``ray_length``) at their first hits, sky where they escape, with fog."""
    shape = hits.t.shape
    flat_t = hits.t.reshape(-1)
    surface = hits.surface.reshape(-1)
    d = dirs.reshape(-1, 3)
    norm_d = ray_length.reshape(-1)
    dist = np.where(np.isfinite(flat_t), flat_t, 0.0) * norm_d
    hit = surface >= 0
    radiance = np.empty((len(surface), 3), np.float32)

    # Sky.
    miss = ~hit
    if miss.any():
        radiance[miss] = sky_radiance(d[miss] / norm_d[miss, None], cond, t)

    idx = np.flatnonzero(hit)
    if len(idx):
        # group the hits by texture so that each texture works on one contiguous slice
        idx = idx[np.argsort(table.texture[surface[idx]], kind="stable")]
        s = surface[idx]
        tex = table.texture[s]
        p = d[idx] * flat_t[idx, None] + origin.astype(np.float32)
        n = hits.normal.reshape(-1, 3)[idx]
        dist_hit = dist[idx]
        seed = table.seed[s]
        emission = table.emission[s]
        anchor = table.anchor[s]
        albedo = table.albedo[s]
        glow = None
        kinds, starts = np.unique(tex, return_index=True)
        ends = np.append(starts[1:], len(tex))
        for kind, a, e in zip(kinds.tolist(), starts.tolist(), ends.tolist()):
            factor, extra = _texture(kind, albedo[a:e], p[a:e], n[a:e], dist_hit[a:e], seed[a:e], cond, emission[a:e], anchor[a:e])
            albedo[a:e] *= factor
            if extra is not None:
                glow = np.zeros_like(albedo) if glow is None else glow
                glow[a:e] = extra
        np.clip(albedo, 0.0, 1.0, out=albedo)

        sun_dir = np.asarray(cond.sun_direction, np.float32)
        irradiance = np.asarray(cond.ambient, np.float32) * (0.65 + 0.35 * n[:, 2:3])
        if cond.sun_direction[2] > 0 and max(cond.sun) > 0:
            lambert = np.clip(n @ sun_dir, 0.0, None)
            if cond.shadows:
                lit = lambert > 0
                li = np.flatnonzero(lit)
                start = p[li] + n[li] * 0.02
                blocked = caster.occluded(start, np.broadcast_to(sun_dir, start.shape), t)
                lambert[li[blocked]] = 0.0
            irradiance = irradiance + lambert[:, None] * np.asarray(cond.sun, np.float32)
        if cond.night:
            irradiance = irradiance + _point_lights(p, n, lights)
        radiance[idx] = albedo * irradiance if glow is None else albedo * irradiance + glow

    if cond.fog_density > 0:
        transmittance = np.exp(-cond.fog_density * np.where(hit, dist, 250.0))[:, None]
        radiance = radiance * transmittance + np.asarray(cond.fog_colour, np.float32) * (1 - transmittance)
    return radiance.reshape(*shape, 3)


STREET_LIGHT_RANGE_M = 30.0  # windowed inverse-square falloff reaches zero here


def _point_lights(p: np.ndarray, n: np.ndarray, lights: Lights) -> np.ndarray:
    """Irradiance (N×3) from the headlights (spots along the ego's heading) and the street lamps
    (downward lobes with a windowed inverse-square falloff, evaluated only within their range)."""
    px, py, pz = (np.ascontiguousarray(p[:, i]) for i in range(3))
    nx, ny, nz = (np.ascontiguousarray(n[:, i]) for i in range(3))
    head = np.zeros(len(p), np.float32)
    axis = lights.headlight_dir
    for lx, ly, lz in lights.headlights.tolist():
        vx, vy, vz = lx - px, ly - py, lz - pz
        d2 = vx * vx + vy * vy + vz * vz + 0.5
        inv = 1.0 / np.sqrt(d2)
        cos_axis = -(vx * axis[0] + vy * axis[1] + vz * axis[2]) * inv
        spot = np.clip((cos_axis - 0.88) / 0.08, 0.0, 1.0) + 0.08 * np.clip((cos_axis - 0.6) / 0.3, 0.0, 1.0)
        head += 70.0 * spot * np.clip((nx * vx + ny * vy + nz * vz) * inv, 0.0, None) / d2
    street = np.zeros(len(p), np.float32)
    r2 = STREET_LIGHT_RANGE_M**2
    for lx, ly, lz in lights.street.tolist():
        dxy2 = (lx - px) ** 2 + (ly - py) ** 2
        idx = np.flatnonzero(dxy2 < r2)
        vx, vy, vz = lx - px[idx], ly - py[idx], lz - pz[idx]
        d2 = dxy2[idx] + vz * vz + 1.0
        inv = 1.0 / np.sqrt(d2)
        lobe = np.clip(vz * inv, 0.0, None) ** 1.5
        window = np.clip(1.0 - d2 / r2, 0.0, None) ** 2
        street[idx] += 12.0 * lobe * window * np.clip((nx[idx] * vx + ny[idx] * vy + nz[idx] * vz) * inv, 0.0, None) / d2
    return head[:, None] * np.array([1.0, 0.97, 0.9], np.float32) + street[:, None] * np.array([1.0, 0.8, 0.55], np.float32)


def sky_radiance(d: np.ndarray, cond: Condition, t: float) -> np.ndarray:
    """Radiance of the sky along unit directions d (N×3): gradient, sun glow, drifting clouds."""
    elevation = np.clip(d[:, 2], 0.0, 1.0)
    mix = np.sqrt(elevation)[:, None]
    horizon, zenith = np.asarray(cond.sky_horizon, np.float32), np.asarray(cond.sky_zenith, np.float32)
    sky = horizon * (1 - mix) + zenith * mix
    if cond.cloud_cover > 0:
        h = np.maximum(d[:, 2], 0.03)
        u, v = d[:, 0] / h * 2.0 + cond.wind * t, d[:, 1] / h * 2.0
        cloud = 0.6 * _value_noise(u, v, 99) + 0.4 * _value_noise(u * 2.7, v * 2.7, 98)
        cover = np.clip((cloud - (1.0 - cond.cloud_cover)) * 3.0, 0.0, 1.0)[:, None]
        cloud_colour = horizon * (0.9 + 0.3 * cloud[:, None])
        sky = sky * (1 - cover) + cloud_colour * cover
    if cond.shadows:  # a visible sun
        c = np.clip(d @ np.asarray(cond.sun_direction, np.float32), 0.0, 1.0)
        sky = sky + np.asarray(cond.sun, np.float32) * (2.0 * c**400 + 0.15 * c**12)[:, None] * 0.5
    below = d[:, 2] < 0  # under the horizon (beyond the ground plane): haze
    sky[below] = horizon * 0.8
    return sky.astype(np.float32)


def rain_streaks(height: int, width: int, t: float, amount: float) -> np.ndarray:
    """H×W additive radiance of falling rain streaks (deterministic in time)."""
    if amount <= 0:
        return np.zeros((height, width), np.float32)
    col = np.arange(width)[None, :]
    row = np.arange(height)[:, None]
    slot = np.floor(row / 14.0 + t * 25.0 + _hash(col, np.zeros_like(col), 5) * 7)
    streak = _hash(np.broadcast_to(col, (height, width)), slot, 17) > 1.0 - 0.004 * amount
    return streak.astype(np.float32) * 0.25


def tone_map(radiance: np.ndarray, exposure: float, noise: float, rng: np.random.Generator | None) -> np.ndarray:
    """Linear radiance -> 8-bit sRGB-like image: a soft shoulder (highlights roll off instead of
    clipping), gamma 2.2, then read noise plus shot noise that grows with the signal."""
    v = radiance * np.float32(exposure)
    np.maximum(v, 0.0, out=v)
    v /= 1.0 + 0.35 * v
    out = np.power(v, np.float32(1.0 / 2.2), dtype=np.float32)
    if rng is not None and noise > 0:
        sigma = np.sqrt(np.minimum(out, 1.0))
        sigma += 0.5
        sigma *= _gaussian_noise(out.shape, rng)
        out += np.float32(noise) * sigma
    out *= 255.0
    out += 0.5
    return np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _noise_bank(shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise twice the image size; frames take random windows of it (drawing
    fresh Gaussian noise for every pixel costs more than the rest of the tone mapping)."""
    return np.random.default_rng(12345).standard_normal((2 * shape[0], 2 * shape[1], *shape[2:]), dtype=np.float32)


def _gaussian_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    bank = _noise_bank(tuple(shape))
    dy, dx = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
    return bank[dy : dy + shape[0], dx : dx + shape[1]]


def luminance(radiance: np.ndarray) -> np.ndarray:
    return radiance @ _LUMA


# --- depth -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthModel:
    max_range_m: float = 120.0
    min_range_m: float = 0.3
    noise_rel: float = 0.003  # std relative to depth

    def measure(self, hits: Hits, rng: np.random.Generator | None) -> np.ndarray:
        z = hits.t.astype(np.float32)
        valid = hits.hit & (z >= self.min_range_m) & (z <= self.max_range_m)
        if rng is not None and self.noise_rel > 0:
            z = z * (1.0 + self.noise_rel * rng.standard_normal(z.shape, dtype=np.float32))
        return np.where(valid, z, np.nan).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)


# --- LiDAR -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LidarModel:
    beams: int = 32
    azimuths: int = 1024
    elevation_min_deg: float = -25.0
    elevation_max_deg: float = 15.0
    max_range_m: float = 120.0
    min_range_m: float = 0.8
    range_noise_m: float = 0.015

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions (beams×azimuths×3, LiDAR frame) and the ring index of each row."""
        el = np.radians(np.linspace(self.elevation_min_deg, self.elevation_max_deg, self.beams))
        az = 2 * np.pi * np.arange(self.azimuths) / self.azimuths
        ce = np.cos(el)[:, None]
        d = np.stack([ce * np.cos(az)[None, :], ce * np.sin(az)[None, :], np.broadcast_to(np.sin(el)[:, None], (self.beams, self.azimuths))], -1)
        return d.astype(np.float32), np.arange(self.beams, dtype=np.uint16)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class LidarScan:
    points: np.ndarray  # N×3 float32, LiDAR frame
    intensity: np.ndarray  # N float32 0..1
    ring: np.ndarray  # N uint16
    labels: np.ndarray  # N uint8 DELIVER ids


def lidar_scan(model: LidarModel, caster: WorldCaster, table: SurfaceTable, cond: Condition, map_from_lidar: Transform,
               t: float, rng: np.random.Generator) -> LidarScan:
    d_lidar, rings = model.directions()
    d_map = rotate_points(d_lidar, map_from_lidar.rotation)
    origins = np.broadcast_to(map_from_lidar.translation.astype(np.float32), d_map.shape)
    hits = caster.cast(origins, d_map, t)
    # azimuth-major order, as a spinning sensor delivers its firings
    r = hits.t.T.reshape(-1)
    surface = hits.surface.T.reshape(-1)
    d = d_lidar.transpose(1, 0, 2).reshape(-1, 3)
    ring = np.broadcast_to(rings[None, :], (model.azimuths, model.beams)).reshape(-1)
    n = hits.normal.transpose(1, 0, 2).reshape(-1, 3)
    ok = (surface >= 0) & (r >= model.min_range_m) & (r <= model.max_range_m)
    s = np.maximum(surface, 0)
    d_map_flat = d_map.transpose(1, 0, 2).reshape(-1, 3)
    cos_inc = np.abs(np.einsum("ij,ij->i", n, d_map_flat))
    intensity = np.clip(table.reflectivity[s] * (0.3 + 0.7 * cos_inc), 0.0, 1.0)
    # return strength falls with range and fog/rain extinction; weak returns drop out
    extinction = np.exp(-2.0 * (cond.fog_density * 0.5 + 0.004 * cond.rain) * np.where(ok, r, 0.0))
    signal = intensity * extinction / (1.0 + (np.where(ok, r, 0.0) / 70.0) ** 2)
    p_return = 1.0 - np.exp(-signal / 0.01)
    p_return *= 1.0 - 0.08 * cond.rain
    ok &= rng.random(len(r)) < p_return
    r_noisy = r + rng.standard_normal(len(r)).astype(np.float32) * model.range_noise_m
    points = (d[ok] * r_noisy[ok, None]).astype(np.float32)
    return LidarScan(points, intensity[ok].astype(np.float32), ring[ok].astype(np.uint16), table.class_id[s[ok]])


# --- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventModel:
    threshold: float = 0.25  # log-luminance contrast per event
    threshold_sigma: float = 0.03  # per-pixel mismatch of the threshold
    refractory_s: float = 0.001
    noise_rate_hz: float = 0.1  # background events per pixel per second
    subframes: int = 1  # renders per camera period (the last is the camera frame itself); 1 = CARLA DVS-like
    floor: float = 0.002  # luminance added before the log (dark-current floor)
    max_per_step: int = 8  # crossings counted per pixel between two sub-frames

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Events:
    """Raw events in world time (seconds as int64 ns from the sequence start)."""

    x: np.ndarray  # uint16
    y: np.ndarray  # uint16
    t_ns: np.ndarray  # int64
    polarity: np.ndarray  # int8


class EventCamera:
    """Stateful event emulator: per-pixel reference log-luminance and last event time."""

    def __init__(self, model: EventModel, width: int, height: int, seed: int) -> None:
        self.model = model
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self.threshold = np.clip(model.threshold + model.threshold_sigma * rng.standard_normal(height * width), 0.05, None).astype(np.float32)
        self.reference: np.ndarray | None = None
        self.last_ns = np.full(height * width, np.iinfo(np.int64).min // 2, np.int64)
        self.last_log: np.ndarray | None = None
        self.last_time_ns = 0

    def log_of(self, lum: np.ndarray) -> np.ndarray:
        return np.log(lum.reshape(-1).astype(np.float32) + self.model.floor)

    def reset(self, lum: np.ndarray, time_ns: int) -> None:
        """Start from a frame without events (first frame, or after a gap in time)."""
        self.last_log = self.log_of(lum)
        self.reference = self.last_log.copy()
        self.last_time_ns = time_ns

    def step(self, lum: np.ndarray, time_ns: int, rng: np.random.Generator) -> Events:
        """Events between the previous frame and this one (luminance H×W at time_ns)."""
        assert self.reference is not None and self.last_log is not None, "reset() first"
        new = self.log_of(lum)
        old = self.last_log
        t0, t1 = self.last_time_ns, time_ns
        delta = new - self.reference
        polarity = np.sign(delta).astype(np.int8)
        count = np.minimum(np.floor(np.abs(delta) / self.threshold), self.model.max_per_step).astype(np.int64)
        xs, ys, ts, ps = [], [], [], []
        active = np.flatnonzero(count > 0)
        slope = new[active] - old[active]
        safe = np.where(np.abs(slope) > 1e-12, slope, 1.0)
        for k in range(1, int(count.max(initial=0)) + 1):
            sel = count[active] >= k
            pix = active[sel]
            level = self.reference[pix] + k * polarity[pix] * self.threshold[pix]
            frac = np.clip((level - old[pix]) / safe[sel], 0.0, 1.0)
            when = t0 + np.rint(frac * (t1 - t0)).astype(np.int64)
            ok = when - self.last_ns[pix] >= int(self.model.refractory_s * 1e9)
            self.last_ns[pix[ok]] = when[ok]
            xs.append(pix[ok] % self.width)
            ys.append(pix[ok] // self.width)
            ts.append(when[ok])
            ps.append(polarity[pix[ok]])
        self.reference[active] += count[active] * polarity[active] * self.threshold[active]
        # background activity: Poisson noise events at random times, random polarity
        n_noise = int(rng.poisson(self.model.noise_rate_hz * self.width * self.height * (t1 - t0) * 1e-9)) if self.model.noise_rate_hz > 0 else 0
        if n_noise:
            pix = rng.integers(0, self.width * self.height, n_noise)
            xs.append(pix % self.width)
            ys.append(pix // self.width)
            ts.append(rng.integers(t0, max(t1, t0 + 1), n_noise))
            ps.append(np.where(rng.random(n_noise) < 0.5, 1, -1).astype(np.int8))
        self.last_log = new
        self.last_time_ns = t1
        if not xs:
            return Events(np.zeros(0, np.uint16), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))
        x = np.concatenate(xs)
        y = np.concatenate(ys)
        t = np.concatenate(ts)
        p = np.concatenate(ps)
        order = np.argsort(t, kind="stable")
        return Events(x[order].astype(np.uint16), y[order].astype(np.uint16), t[order].astype(np.int64), p[order].astype(np.int8))
