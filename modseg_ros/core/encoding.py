"""One image encoding per modality, shared by the world's dataset writer, training, the node and
the offline replay, so that a network sees the same thing offline and live.

Every modality becomes an H×W×3 uint8 image aligned with the camera (the camera's resolution and
pixel grid), as DELIVER stores its modalities; the model package turns these into tensors.

=========  ====================================================================================
camera     RGB as received (bgr/bgra/rgba/mono converted to RGB by the converter).
depth      HHA-like: [range code of the depth z, height above the ground, |cos| of the angle
           between the surface normal and the vertical]; 0 where the depth is invalid.
lidar      Points projected into the camera (nearest point wins per pixel):
           [range code of the camera depth z, intensity, height above the ground]; 0 where no point.
           Intensity in [0, 1] after the driver's scale (``inputs.lidar_intensity_scale``); a scan
           whose values still exceed 1 is divided by its maximum, so their order survives. For a
           checkpoint with ``lidar_intensity: scan_rank`` (it reads only that order) the scan is
           divided by its 99th percentile instead, whatever its scale (``intensity_code``).
events     Events of one message rendered on the event sensor's grid and mapped onto the camera
           grid: [negative count, positive count, recency of the pixel's last event]; 0 where none.
=========  ====================================================================================

The range code is logarithmic so that near and far get similar precision:
``code = 1 + 254 * (1 - ln(z / near) / ln(far / near))`` clipped to 1..255 (255 = near), 0 = none.
Heights are coded linearly over ``[height_min, height_max]`` onto 1..255.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from modseg_ros.core.geometry import Intrinsics, Rig, dot3
from modseg_ros.core.params import Parameter, ParameterReader
from modseg_ros.core.types import (
    CameraFrame,
    DepthFrame,
    EventFrame,
    EventPacket,
    Modality,
    Payload,
    PointCloud,
)
from modseg_ros.errors import ConfigError


@dataclass(frozen=True)
class EncodingConfig:
    near_m: float = 0.5
    far_m: float = 200.0
    height_min_m: float = -2.0
    height_max_m: float = 10.0
    event_saturation: int = 4  # events per pixel that map to 255
    event_window_ms: float = 50.0  # recency channel: an event this old (or older) codes as 1

    PARAMETERS = (
        Parameter("encoding.near_m", "nearest range coded (depth and LiDAR range channels, log scale)", "> 0 m"),
        Parameter("encoding.far_m", "farthest range coded", "> near_m"),
        Parameter("encoding.height_min_m", "LiDAR height channel: height coded as 0", "m"),
        Parameter("encoding.height_max_m", "LiDAR height channel: height coded as 255", "> height_min_m"),
        Parameter("encoding.event_saturation", "events per pixel that map to 255", ">= 1"),
        Parameter("encoding.event_window_ms", "event recency channel: an event this old codes as 1", "> 0 ms"),
    )

    @classmethod
    def from_parameters(cls, r: ParameterReader) -> EncodingConfig:
        encoding = cls(
            near_m=r.positive("encoding.near_m"),
            far_m=r.positive("encoding.far_m"),
            height_min_m=r.number("encoding.height_min_m"),
            height_max_m=r.number("encoding.height_max_m"),
            event_saturation=r.integer("encoding.event_saturation", 1),
            event_window_ms=r.positive("encoding.event_window_ms"),
        )
        if encoding.far_m <= encoding.near_m:
            raise ConfigError(f"parameter 'encoding.far_m' must exceed 'encoding.near_m' ({encoding.near_m:g})")
        if encoding.height_max_m <= encoding.height_min_m:
            raise ConfigError("parameter 'encoding.height_max_m' must exceed 'encoding.height_min_m'")
        return encoding

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def range_code(z: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    """Metric depth -> uint8 code (0 for NaN, non-positive or non-finite values)."""
    z = np.asarray(z, dtype=np.float32)
    valid = np.isfinite(z) & (z > 0)
    zc = np.clip(np.where(valid, z, cfg.near_m), cfg.near_m, cfg.far_m)
    code = 1.0 + 254.0 * (1.0 - np.log(zc / cfg.near_m) / np.log(cfg.far_m / cfg.near_m))
    return np.where(valid, np.rint(code), 0).astype(np.uint8)


def decode_range(code: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    """Inverse of ``range_code`` (NaN where code is 0)."""
    c = np.asarray(code, dtype=np.float32)
    z = cfg.near_m * np.exp((1.0 - (c - 1.0) / 254.0) * np.log(cfg.far_m / cfg.near_m))
    return np.where(c > 0, z, np.nan).astype(np.float32)


def height_code(h: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    t = (np.asarray(h, dtype=np.float32) - cfg.height_min_m) / (cfg.height_max_m - cfg.height_min_m)
    return np.rint(1.0 + 254.0 * np.clip(t, 0.0, 1.0)).astype(np.uint8)


def encode_camera(frame: CameraFrame, rig: Rig) -> np.ndarray:
    """The image on the rig's camera grid: area-averaged down to a smaller processing grid (box
    filter: no aliasing), nearest up to a larger one."""
    image = frame.image
    cam = rig.camera
    if image.shape[:2] == (cam.height, cam.width):
        return np.ascontiguousarray(image)
    if image.shape[0] >= cam.height and image.shape[1] >= cam.width:
        box = Image.fromarray(np.ascontiguousarray(image)).resize((cam.width, cam.height), Image.Resampling.BOX, reducing_gap=2.0)
        return np.asarray(box)
    return np.ascontiguousarray(resize_nearest(image, cam.height, cam.width))


@np.errstate(over="ignore", invalid="ignore")  # absurd depths overflow to inf: coded as far / no normal
def encode_depth(frame: DepthFrame, rig: Rig, cfg: EncodingConfig) -> np.ndarray:
    depth = frame.depth_m
    intr = _intrinsics_for_image(rig.intrinsics_of(Modality.DEPTH), depth.shape)
    cam = rig.camera
    camera_from_depth = rig.camera_from(Modality.DEPTH)
    if camera_from_depth.is_identity(1e-6):
        z = depth if intr == cam else _warp_nearest(depth, intr, cam, fill=np.nan)
    else:  # a depth sensor beside the camera: re-project its points (nearest surface wins)
        points = depth_to_points(depth, intr)
        z = _zbuffer(camera_from_depth.apply(points), cam)
    valid = np.isfinite(z) & (z > 0)
    base_from_camera = rig.base_from[Modality.CAMERA]
    # R (z·ray) + t = z (R ray) + t: the rays turned once (cached), then one multiply-add per pixel,
    # one plane per axis (the normals' differences then run on contiguous rows)
    points_base = _rotated_ray_planes(cam, base_from_camera.rotation.tobytes()) * np.where(valid, z, np.float32(0))
    points_base += base_from_camera.translation.astype(np.float32)[:, None, None]  # 3×H×W; invalid pixels at the camera
    out = np.empty((cam.height, cam.width, 3), dtype=np.uint8)
    out[..., 0] = range_code(z, cfg)
    out[..., 1] = np.where(valid, height_code(points_base[2], cfg), 0)
    out[..., 2] = _normal_verticality_code(points_base, valid)
    return out


MIN_DEPTH_M = 0.1  # points nearer the camera plane than this are not projected (geometry.Intrinsics.project)


@np.errstate(over="ignore", invalid="ignore")  # absurd coordinates land outside the image
def encode_lidar(cloud: PointCloud, rig: Rig, cfg: EncodingConfig, lidar_intensity: str = "raw") -> np.ndarray:
    cam = rig.camera
    out = np.zeros((cam.height, cam.width, 3), dtype=np.uint8)
    points = cloud.points
    if len(points) == 0:
        return out
    camera_from_lidar = rig.camera_from(Modality.LIDAR)
    # depth along the optical axis first: a spinning LiDAR's points behind the camera (most of a
    # 360° scan) are dropped before the full transform
    depth = dot3(points, camera_from_lidar.rotation[2]) + np.float32(camera_from_lidar.translation[2])
    ahead = np.flatnonzero(depth > MIN_DEPTH_M)  # non-finite points are not ahead
    ahead_points = points[ahead]
    pts_cam = camera_from_lidar.apply(ahead_points)
    u, v, idx = cam.project(pts_cam, MIN_DEPTH_M)  # non-finite points land nowhere
    if len(idx) == 0:
        return out
    winners = nearest_per_pixel(v * cam.width + u, pts_cam[idx, 2], cam.height * cam.width)
    keep = ahead[idx[winners]]
    z = pts_cam[idx[winners], 2]
    uu, vv = u[winners], v[winners]
    # the height alone, from the aligned copy of the points ahead (rows of the cloud's message are unaligned)
    base_from_lidar = rig.base_from[Modality.LIDAR]
    heights = np.matmul(ahead_points[idx[winners]], base_from_lidar.rotation[2].astype(np.float32))
    heights += np.float32(base_from_lidar.translation[2])
    out[vv, uu, 0] = range_code(z, cfg)
    out[vv, uu, 1] = intensity_code(cloud.intensity[keep], lidar_intensity)
    out[vv, uu, 2] = height_code(heights, cfg)
    return out


# The share of a scan's returns in the image above the level that codes as 255 when the intensity
# is read as its order ("scan_rank"): a few retro-reflectors do not squeeze the rest into few levels.
BRIGHT_SHARE = 0.01


def intensity_code(intensity: np.ndarray, lidar_intensity: str = "raw") -> np.ndarray:
    """The 8-bit intensity channel of the returns that won their pixels. ``raw``: the value in [0, 1]
    after the driver's scale (a scan with values above 1 is divided by its maximum, so their order
    survives). ``scan_rank`` (a checkpoint that reads only the order, core/network_input.py): the
    values divided by the scan's 99th percentile first, so that a sensor whose intensities span
    0-0.01 keeps 256 levels of order instead of three."""
    intensity = np.nan_to_num(intensity, nan=0.0, posinf=0.0, neginf=0.0)
    if lidar_intensity == "scan_rank" and len(intensity):
        k = int((len(intensity) - 1) * (1 - BRIGHT_SHARE))
        top = float(np.partition(intensity, k)[k])
        scale = top if top > 0 else float(intensity.max())
    else:
        brightest = float(intensity.max(initial=0.0))
        scale = brightest if brightest > 1.0 else 1.0  # raw counts (0-255, 0-65535) the parameters do not scale
    if scale <= 0:
        return np.zeros(len(intensity), np.uint8)
    return np.rint(np.clip(intensity / scale, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_events(packet: EventPacket, cfg: EncodingConfig,
                  sampled: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    """Events on the event sensor's own grid -> height×width×3 uint8 event frame; with ``sampled``
    (``_sampled_pixels``: the output row of each sensor row and column of each sensor column, -1
    for the unsampled) the frame on that smaller grid, from the events of the sampled pixels only:
    the same as rendering on the sensor's grid and sampling it, without the sensor-sized arrays."""
    h, w = packet.height, packet.width
    row_of, col_of = sampled if sampled is not None else (np.arange(h), np.arange(w))
    # row and column of every uint16 coordinate, -1 off the sensor or unsampled: one lookup per
    # event places it or drops it (no bounds tests, no int64 copies of a million coordinates;
    # np.take gathers twice as fast as indexing)
    rows, cols = np.full(65536, -1, np.int32), np.full(65536, -1, np.int32)
    rows[:min(h, 65536)], cols[:min(w, 65536)] = row_of[:65536], col_of[:65536]
    r, c = np.take(rows, packet.y), np.take(cols, packet.x)
    keep = np.flatnonzero((r >= 0) & (c >= 0))
    h, w = (int(row_of.max()) + 1, int(col_of.max()) + 1) if sampled is not None else (h, w)
    lin = np.take(r, keep)
    lin *= w
    lin += np.take(c, keep)
    t, p = np.take(packet.t_ns, keep), np.take(packet.polarity, keep)
    # counts -> min(count * 255 / saturation, 255) truncated, as a table: from saturation + 1 on, 255
    top = cfg.event_saturation + 1
    to_code = np.minimum(np.arange(top + 1) * (255.0 / cfg.event_saturation), 255.0).astype(np.uint8)
    negative, positive = (to_code[np.minimum(np.bincount(lin[s], minlength=h * w), top)] for s in (p < 0, p > 0))
    recent = np.zeros(h * w, dtype=np.uint8)
    if len(lin):
        window_ns = cfg.event_window_ms * 1e6
        last = np.full(h * w, -np.inf)
        np.maximum.at(last, lin, t.astype(np.float64))
        hit = np.isfinite(last)
        recency = np.clip(1.0 + last[hit] / window_ns, 0.0, 1.0)  # 1 for the newest, 0 at -window
        recent[hit] = np.rint(1.0 + 254.0 * recency).astype(np.uint8)
    return np.stack([negative, positive, recent], axis=-1).reshape(h, w, 3)


def encode_events(data: EventPacket | EventFrame, rig: Rig, cfg: EncodingConfig) -> np.ndarray:
    # The event camera is taken as co-located with the camera (DELIVER's assumption); pixels map
    # through the intrinsics alone, nearest neighbour (what DELIVER's loader does for low-res events).
    if isinstance(data, EventPacket):
        intr = _intrinsics_for_image(rig.intrinsics_of(Modality.EVENTS), (data.height, data.width))
        sampled = _sampled_pixels(intr, rig.camera) if intr != rig.camera else None
        if sampled is not None:  # a sensor finer than the grid: bin the sampled pixels' events straight onto it
            return render_events(data, cfg, sampled)
    frame = render_events(data, cfg) if isinstance(data, EventPacket) else data.image
    intr = _intrinsics_for_image(rig.intrinsics_of(Modality.EVENTS), frame.shape[:2])
    if intr == rig.camera:
        return np.ascontiguousarray(frame)
    return _warp_nearest(frame, intr, rig.camera, fill=0)


def encode_payload(modality: Modality, data: Payload, rig: Rig, cfg: EncodingConfig, lidar_intensity: str = "raw") -> np.ndarray:
    """Any sample payload -> its H×W×3 uint8 encoding on the camera grid (``lidar_intensity``: how
    the checkpoint reads LiDAR intensity, ``intensity_code``)."""
    if modality is Modality.CAMERA and isinstance(data, CameraFrame):
        return encode_camera(data, rig)
    if modality is Modality.DEPTH and isinstance(data, DepthFrame):
        return encode_depth(data, rig, cfg)
    if modality is Modality.LIDAR and isinstance(data, PointCloud):
        return encode_lidar(data, rig, cfg, lidar_intensity)
    if modality is Modality.EVENTS and isinstance(data, (EventPacket, EventFrame)):
        return encode_events(data, rig, cfg)
    raise TypeError(f"no encoding of {type(data).__name__} for modality {modality}")


# --- helpers ---------------------------------------------------------------------------------------


def depth_to_points(depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """H×W depth (z, metres) -> N×3 camera-frame points of the valid pixels."""
    rays = intr.pixel_rays()
    valid = np.isfinite(depth) & (depth > 0)
    return (rays[valid] * depth[valid][:, None]).astype(np.float32)


@lru_cache(maxsize=8)
def _pixel_rays(intr: Intrinsics) -> np.ndarray:
    rays = intr.pixel_rays().astype(np.float32)
    rays.flags.writeable = False
    return rays


@lru_cache(maxsize=8)
def _rotated_ray_planes(intr: Intrinsics, rotation: bytes) -> np.ndarray:
    """The pixel rays of ``intr`` turned by a 3×3 rotation (float64 bytes, row-major), 3×H×W."""
    matrix = np.frombuffer(rotation, dtype=np.float64).reshape(3, 3)
    rays = (_pixel_rays(intr) @ matrix.T.astype(np.float32)).astype(np.float32)
    planes = np.ascontiguousarray(rays.transpose(2, 0, 1))
    planes.flags.writeable = False
    return planes


def _intrinsics_for_image(intr: Intrinsics, shape: tuple[int, ...]) -> Intrinsics:
    h, w = int(shape[0]), int(shape[1])
    return intr if (intr.height, intr.width) == (h, w) else intr.scaled(w, h)


def nearest_per_pixel(pixel: np.ndarray, z: np.ndarray, pixels: int) -> np.ndarray:
    """Indices into ``pixel``/``z`` of the nearest point of every pixel hit (of equally near ones,
    the first), in pixel order. O(n): a minimum per pixel, then the first index that reaches it; no
    sort (a 128×2048 scan would spend most of its encoding time sorting)."""
    nearest = np.full(pixels, np.inf, dtype=np.float32)
    np.minimum.at(nearest, pixel, z.astype(np.float32, copy=False))
    candidates = np.flatnonzero(z == nearest[pixel])
    owner = np.full(pixels, len(z), dtype=np.int64)
    np.minimum.at(owner, pixel[candidates], candidates)
    return owner[owner < len(z)]


def _zbuffer(points_cam: np.ndarray, cam: Intrinsics) -> np.ndarray:
    """Camera-frame points -> H×W depth of the nearest point per pixel (NaN where none)."""
    z = np.full((cam.height, cam.width), np.nan, dtype=np.float32)
    u, v, idx = cam.project(points_cam)
    winners = nearest_per_pixel(v * cam.width + u, points_cam[idx, 2], cam.height * cam.width)
    z[v[winners], u[winners]] = points_cam[idx[winners], 2]
    return z


def _warp_nearest(image: np.ndarray, src: Intrinsics, dst: Intrinsics, fill: float) -> np.ndarray:
    """Resample ``image`` (on ``src``'s grid) onto ``dst``'s grid through the intrinsics alone."""
    u, v = _source_pixels(src, dst)
    ok_u = (u >= 0) & (u < src.width)
    ok_v = (v >= 0) & (v < src.height)
    out = image[np.clip(v, 0, src.height - 1)[:, None], np.clip(u, 0, src.width - 1)]  # (no copy of whole rows)
    if ok_u.all() and ok_v.all():
        return out
    inside = ok_v[:, None] & ok_u[None, :]
    if image.ndim == 3:
        inside = inside[..., None]
    return np.where(inside, out, np.array(fill, dtype=image.dtype))


def _source_pixels(src: Intrinsics, dst: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """The source column and row ``_warp_nearest`` reads for each destination column and row."""
    u = np.floor((np.arange(dst.width) + 0.5 - dst.cx) / dst.fx * src.fx + src.cx).astype(np.int64)
    v = np.floor((np.arange(dst.height) + 0.5 - dst.cy) / dst.fy * src.fy + src.cy).astype(np.int64)
    return u, v


def _sampled_pixels(src: Intrinsics, dst: Intrinsics) -> tuple[np.ndarray, np.ndarray] | None:
    """For a destination grid that samples the source (each source pixel read at most once, every
    destination pixel inside it): the destination row of each source row and column of each source
    column (-1: not read). None otherwise (enlarging, or a view beyond the source)."""
    u, v = _source_pixels(src, dst)
    inside = (u >= 0).all() and (u < src.width).all() and (v >= 0).all() and (v < src.height).all()
    if not inside or len(np.unique(u)) < len(u) or len(np.unique(v)) < len(v):
        return None
    col_of = np.full(src.width, -1, dtype=np.int64)
    col_of[u] = np.arange(dst.width)
    row_of = np.full(src.height, -1, dtype=np.int64)
    row_of[v] = np.arange(dst.height)
    return row_of, col_of


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] // height).astype(np.int64)
    cols = (np.arange(width) * image.shape[1] // width).astype(np.int64)
    return image[rows][:, cols]


def _normal_verticality_code(points_base: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """|cos| between each pixel's surface normal (from neighbouring points, 3×H×W, finite
    everywhere) and the vertical. In place where it can: this runs on every depth image as it arrives."""
    p = points_base
    h, w = valid.shape
    # central differences along x (columns) and y (rows) of the interior pixels, one axis at a time
    dx = [p[c, 1:-1, 2:] - p[c, 1:-1, :-2] for c in range(3)]
    dy = [p[c, 2:, 1:-1] - p[c, :-2, 1:-1] for c in range(3)]
    nx = dx[1] * dy[2]  # n = dx × dy
    nx -= dx[2] * dy[1]
    ny = dx[2] * dy[0]
    ny -= dx[0] * dy[2]
    nz = dx[0] * dy[1]
    nz -= dx[1] * dy[0]
    norm = nx * nx
    norm += ny * ny
    norm += nz * nz
    np.sqrt(norm, out=norm)
    ok = valid[1:-1, 1:-1] & (norm > 1e-9)
    ok &= valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
    cos = np.divide(np.abs(nz, out=nz), norm, out=nz, where=ok)
    np.clip(cos, 0.0, 1.0, out=cos)
    cos *= 254.0
    cos += 1.0
    out = np.zeros((h, w), np.uint8)
    out[1:-1, 1:-1] = np.where(ok, np.rint(cos), 0)
    return out
