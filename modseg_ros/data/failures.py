"""Sensor failures scheduled in time: one spec parser, and the functions that apply a failure to a
message's payload and stamp. The embedded world and the bag player inject failures with the same
code, so a failure looks the same whether it was recorded or injected on the fly.

Spec (CLI string or YAML), items separated by commas::

    <modality>:<kind>[(<param>=<value>,...)][@<start>-<end>]

    camera:blackout@3-6s, lidar:silent@5-8s, lidar:blockage(from=-45,to=45)@2s-4.5s,
    events:lowres(factor=8)@0-10, camera:stamp_delay(ms=120)@1.5s-, depth:dropout

Times are seconds from the start of the recording (``s`` or ``ms`` suffix; no suffix = seconds);
an open end (``@5-``) or no ``@`` means until the end. A YAML file holds a list of such strings, or
of mappings ``{modality, kind, start, end, params}``.

Adding a kind: write ``_apply_<kind>`` (payload in, payload out; pure, numpy only) and add one
``KindSpec`` line to ``KINDS``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from modseg_ros.core.geometry import rotate_points, rotation_from_rpy
from modseg_ros.core.types import (
    MODALITIES,
    CameraFrame,
    DepthFrame,
    EventFrame,
    EventPacket,
    Modality,
    Payload,
    PointCloud,
)
from modseg_ros.errors import ConfigError

NS = 1_000_000_000
ANY = frozenset(MODALITIES)
CAM, DEP, LID, EVT = (frozenset({m}) for m in MODALITIES)


@dataclass(frozen=True)
class Failure:
    """One scheduled failure of one sensor."""

    modality: Modality
    kind: str
    start_s: float = 0.0
    end_s: float = math.inf
    params: Mapping[str, float] = field(default_factory=dict)  # complete: defaults filled in

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s

    @property
    def spec(self) -> KindSpec:
        return KINDS[self.kind]

    def __str__(self) -> str:
        defaults = KINDS[self.kind].params
        changed = {k: v for k, v in self.params.items() if v != defaults.get(k)}
        args = "(" + ",".join(f"{k}={_fmt(v)}" for k, v in changed.items()) + ")" if changed else ""
        if not math.isinf(self.end_s):
            when = f"@{_fmt(self.start_s)}-{_fmt(self.end_s)}s"
        else:
            when = f"@{_fmt(self.start_s)}s-" if self.start_s > 0 else ""
        return f"{self.modality.value}:{self.kind}{args}{when}"

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality.value, "kind": self.kind, "start": self.start_s,
                "end": None if math.isinf(self.end_s) else self.end_s, "params": dict(self.params)}  # fmt: skip


def _fmt(value: float) -> str:
    return f"{value:g}"


# --- payload functions (pure; rng is a per-message generator) --------------------------------------


def _to_linear(image: np.ndarray) -> np.ndarray:
    return np.power(image.astype(np.float32) / 255.0, 2.2)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    return np.clip(np.power(np.clip(linear, 0.0, 1.0), 1 / 2.2) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _apply_exposure(frame: CameraFrame, p: Mapping[str, float], rng: np.random.Generator) -> CameraFrame:
    linear = _to_linear(frame.image) * p["gain"]
    noisy = linear + rng.standard_normal(linear.shape, dtype=np.float32) * p["noise"]  # amplified read noise
    return CameraFrame(_to_srgb(noisy))


def _apply_motionblur(frame: CameraFrame, p: Mapping[str, float], rng: np.random.Generator) -> CameraFrame:
    """Average of the image shifted along a line of ``length`` pixels at ``angle`` degrees."""
    length = max(int(round(p["length"])), 1)
    angle = math.radians(p["angle"])
    image = frame.image.astype(np.float32)
    acc = np.zeros_like(image)
    h, w = image.shape[:2]
    for i in range(length):
        s = i - (length - 1) / 2.0
        dx, dy = int(round(s * math.cos(angle))), int(round(s * math.sin(angle)))
        rows = np.clip(np.arange(h) - dy, 0, h - 1)
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        acc += image[rows][:, cols]
    return CameraFrame(np.clip(acc / length + 0.5, 0, 255).astype(np.uint8))


def _apply_blackout(frame: CameraFrame, p: Mapping[str, float], rng: np.random.Generator) -> CameraFrame:
    return CameraFrame(np.zeros_like(frame.image))


def _apply_depth_dropout(frame: DepthFrame, p: Mapping[str, float], rng: np.random.Generator) -> DepthFrame:
    """Invalid blobs: a coarse random grid (cells of ``cell`` pixels) decides where depth is lost."""
    h, w = frame.depth_m.shape
    cell = max(int(p["cell"]), 1)
    grid = rng.random(((h + cell - 1) // cell, (w + cell - 1) // cell))
    lost = np.repeat(np.repeat(grid < p["fraction"], cell, 0), cell, 1)[:h, :w]
    return DepthFrame(np.where(lost, np.float32(np.nan), frame.depth_m).astype(np.float32))


def _apply_depth_region(frame: DepthFrame, p: Mapping[str, float], rng: np.random.Generator) -> DepthFrame:
    h, w = frame.depth_m.shape
    depth = frame.depth_m.copy()
    top, bottom = int(p["top"] * h), int(math.ceil(p["bottom"] * h))
    left, right = int(p["left"] * w), int(math.ceil(p["right"] * w))
    depth[top:bottom, left:right] = np.nan
    return DepthFrame(depth)


def _apply_lidar_jitter(cloud: PointCloud, p: Mapping[str, float], rng: np.random.Generator) -> PointCloud:
    noise = rng.standard_normal(cloud.points.shape).astype(np.float32) * np.float32(p["sigma"])
    return PointCloud((cloud.points + noise).astype(np.float32), cloud.intensity, cloud.ring)


def _apply_lidar_blockage(cloud: PointCloud, p: Mapping[str, float], rng: np.random.Generator) -> PointCloud:
    """No returns in the azimuth sector [from, to] degrees (x forward, counter-clockwise); full by default."""
    azimuth = np.degrees(np.arctan2(cloud.points[:, 1], cloud.points[:, 0]))
    lo, hi = p["from"], p["to"]
    if hi - lo >= 360.0:
        blocked = np.ones(len(azimuth), bool)
    else:
        blocked = np.mod(azimuth - lo, 360.0) <= np.mod(hi - lo, 360.0)
    return _select_points(cloud, ~blocked)


def _apply_lidar_sparse(cloud: PointCloud, p: Mapping[str, float], rng: np.random.Generator) -> PointCloud:
    return _select_points(cloud, rng.random(len(cloud.points)) < p["keep"])


def _select_points(cloud: PointCloud, keep: np.ndarray) -> PointCloud:
    ring = None if cloud.ring is None else cloud.ring[keep]
    return PointCloud(cloud.points[keep], cloud.intensity[keep], ring)


def _apply_events_lowres(data: EventPacket | EventFrame, p: Mapping[str, float], rng: np.random.Generator):
    """A sensor with ``factor`` times fewer pixels per side (what DELIVER's 'eventlowres' shows)."""
    f = max(int(p["factor"]), 1)
    if isinstance(data, EventFrame):
        small = data.image[::f, ::f]
        return EventFrame(np.ascontiguousarray(np.repeat(np.repeat(small, f, 0), f, 1)[: data.image.shape[0], : data.image.shape[1]]))
    return EventPacket((data.x // f).astype(np.uint16), (data.y // f).astype(np.uint16), data.t_ns, data.polarity,
                       -(-data.width // f), -(-data.height // f))  # fmt: skip


def _apply_events_burst(data: EventPacket | EventFrame, p: Mapping[str, float], rng: np.random.Generator):
    """Noise events of random polarity, ``density`` per pixel, spread over the packet's time span."""
    if isinstance(data, EventFrame):
        image = data.image.copy()
        noisy = rng.random(image.shape[:2]) < min(p["density"], 1.0)
        channel = rng.integers(0, 2, image.shape[:2])
        for c in (0, 1):
            sel = noisy & (channel == c)
            image[..., c][sel] = np.maximum(image[..., c][sel], 255 // 4)
        image[..., 2][noisy] = np.maximum(image[..., 2][noisy], 255)
        return EventFrame(image)
    n = int(rng.poisson(p["density"] * data.width * data.height))
    span = int(p["window_ms"] * 1e6)
    x = rng.integers(0, data.width, n).astype(np.uint16)
    y = rng.integers(0, data.height, n).astype(np.uint16)
    t = -rng.integers(0, max(span, 1), n).astype(np.int64)
    pol = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    order = np.argsort(np.concatenate([data.t_ns, t]), kind="stable")
    return EventPacket(np.concatenate([data.x, x])[order], np.concatenate([data.y, y])[order],
                       np.concatenate([data.t_ns, t])[order], np.concatenate([data.polarity, pol])[order],
                       data.width, data.height)  # fmt: skip


# Quiet faults: the sensor keeps streaming plausible data that no longer agrees with the others.


def _blob_mask(h: int, w: int, p: Mapping[str, float]) -> np.ndarray:
    """An irregular blob covering exactly ``fraction`` of an h×w image around (``x``, ``y``) (image
    fractions): the pixels nearest the centre in an elliptical, angularly wobbling distance."""
    return _blob(h, w, float(p["fraction"]), float(p["x"]), float(p["y"]))


@lru_cache(maxsize=8)
def _blob(h: int, w: int, fraction: float, x: float, y: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xx + 0.5) / w - x, (yy + 0.5) / h - y
    angle = np.arctan2(dy, dx)
    distance = np.hypot(dx, dy) / (1.0 + 0.2 * np.sin(3 * angle + 1.0) + 0.1 * np.sin(5 * angle))
    count = int(round(np.clip(fraction, 0.0, 1.0) * h * w))
    mask = np.zeros(h * w, bool)
    mask[np.argsort(distance, axis=None, kind="stable")[:count]] = True
    mask = mask.reshape(h, w)
    mask.flags.writeable = False
    return mask


def _apply_color_cast(frame: CameraFrame, p: Mapping[str, float], rng: np.random.Generator) -> CameraFrame:
    """Per-channel gains in linear light: a wrong white balance or a tinted cover."""
    gains = np.array([p["r"], p["g"], p["b"]], np.float32)
    return CameraFrame(_to_srgb(_to_linear(frame.image) * gains))


def _box_blur(image: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over 2·radius+1 pixels along ``axis``, edges repeated (one pass of a Gaussian approximation)."""
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(image, pad, mode="edge"), axis=axis, dtype=np.float32)
    n = image.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / (2 * radius + 1)


def _apply_smear(frame: CameraFrame, p: Mapping[str, float], rng: np.random.Generator) -> CameraFrame:
    """A greasy or dirty lens: Gaussian-like blur of ``sigma`` pixels (three box passes per axis)
    plus a veil of scattered light (``veil``: share of the image's mean brightness added as haze)."""
    image = _to_linear(frame.image)
    radius = max(int(round(p["sigma"] * 0.9)), 0)  # three box passes of 2r+1 ≈ a Gaussian of sigma ≈ 1.1 r
    for axis in (0, 1):
        for _ in range(3 if radius else 0):
            image = _box_blur(image, radius, axis)
    veil = p["veil"]
    image = (1.0 - veil) * image + veil * image.mean(axis=(0, 1), keepdims=True)
    return CameraFrame(_to_srgb(image))


def _apply_occlusion(frame: CameraFrame, p: Mapping[str, float], rng: np.random.Generator) -> CameraFrame:
    """Mud or a leaf on the lens: a textured, dark brown blob over ``fraction`` of the image. Its
    texture keeps the exposure and blockage checks quiet below their block fractions."""
    h, w = frame.image.shape[:2]
    mask = _blob_mask(h, w, p)
    mud = np.array([72.0, 58.0, 44.0], np.float32) + rng.normal(0.0, 9.0, (int(mask.sum()), 1)).astype(np.float32)
    image = frame.image.copy()
    image[mask] = np.clip(mud, 0, 255).astype(np.uint8)
    return CameraFrame(image)


def _apply_depth_scale(frame: DepthFrame, p: Mapping[str, float], rng: np.random.Generator) -> DepthFrame:
    return DepthFrame((frame.depth_m * np.float32(p["factor"])).astype(np.float32))


def _apply_depth_offset(frame: DepthFrame, p: Mapping[str, float], rng: np.random.Generator) -> DepthFrame:
    # a driver's no-depth markers (0, negative, inf: core/messages.py depth_frame) stay invalid, not m metres
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(frame.depth_m) & (frame.depth_m > 0)
        shifted = frame.depth_m + np.float32(p["m"])
        return DepthFrame(np.where(valid & (shifted > 0), shifted, np.float32(np.nan)).astype(np.float32))


def _move_lidar(cloud: PointCloud, rotation: np.ndarray, translation: np.ndarray) -> PointCloud:
    """The cloud of a LiDAR moved by (rotation, translation) from its calibrated pose: a point q0 of
    the calibrated sensor frame is seen at R^T (q0 - t)."""
    return PointCloud(rotate_points(cloud.points - translation.astype(np.float32), rotation.T), cloud.intensity, cloud.ring)


def _apply_lidar_rotation(cloud: PointCloud, p: Mapping[str, float], rng: np.random.Generator) -> PointCloud:
    rotation = rotation_from_rpy(*np.radians([p["roll"], p["pitch"], p["yaw"]]))
    return _move_lidar(cloud, rotation, np.zeros(3))


def _apply_lidar_translation(cloud: PointCloud, p: Mapping[str, float], rng: np.random.Generator) -> PointCloud:
    return _move_lidar(cloud, np.eye(3), np.array([p["x"], p["y"], p["z"]]))


def _apply_events_flicker(data: EventPacket | EventFrame, p: Mapping[str, float], rng: np.random.Generator):
    """A flickering light (LED or fluorescent lamp at ``hz``): every pixel of a blob covering
    ``fraction`` of the sensor fires on each brightness swing, alternating polarity, twice a period."""
    if isinstance(data, EventFrame):
        image = data.image.copy()
        image[_blob_mask(*image.shape[:2], p)] = 255
        return EventFrame(image)
    ys, xs = np.nonzero(_blob_mask(data.height, data.width, p))
    span = int(p["window_ms"] * 1e6)
    half_period = max(int(round(0.5e9 / max(p["hz"], 1e-3))), 1)
    swings = np.arange(-span, 0, half_period, dtype=np.int64)  # (k,) swing times in the packet
    if len(xs) == 0 or len(swings) == 0:
        return data
    phase = rng.integers(0, half_period, 1)[0]  # the lamp's phase in this packet
    jitter = rng.integers(0, max(half_period // 20, 1), (len(xs), len(swings)))  # pixels cross the threshold unevenly
    t = (swings[None, :] + phase + jitter).ravel()
    pol = np.where(np.arange(len(swings)) % 2 == 0, 1, -1).astype(np.int8)
    x = np.repeat(xs.astype(np.uint16), len(swings))
    y = np.repeat(ys.astype(np.uint16), len(swings))
    pol = np.tile(pol, len(xs))
    keep = (t <= 0) & (t >= -span)
    t_all = np.concatenate([data.t_ns, t[keep]])
    order = np.argsort(t_all, kind="stable")
    return EventPacket(np.concatenate([data.x, x[keep]])[order], np.concatenate([data.y, y[keep]])[order],
                       t_all[order], np.concatenate([data.polarity, pol[keep]])[order], data.width, data.height)  # fmt: skip


# --- the kinds -------------------------------------------------------------------------------------

PayloadFn = Callable[[Any, Mapping[str, float], np.random.Generator], Any]


@dataclass(frozen=True)
class KindSpec:
    modalities: frozenset[Modality]
    params: Mapping[str, float]  # names and defaults
    summary: str
    payload: PayloadFn | None = None  # None: acts on delivery or stamps, not on the content
    payload_types: tuple[type, ...] = ()
    deliver_case: str = ""  # DELIVER corner-case token for the dataset path


KINDS: dict[str, KindSpec] = {
    "overexposure": KindSpec(CAM, {"gain": 6.0, "noise": 0.0}, "saturated, washed-out image", _apply_exposure, (CameraFrame,), "overexposure"),
    "underexposure": KindSpec(CAM, {"gain": 0.06, "noise": 0.002}, "dark, noisy image", _apply_exposure, (CameraFrame,), "underexposure"),
    "motionblur": KindSpec(CAM, {"length": 15.0, "angle": 0.0}, "linear blur over `length` pixels", _apply_motionblur, (CameraFrame,), "motionblur"),
    "blackout": KindSpec(CAM, {}, "all-black image", _apply_blackout, (CameraFrame,)),
    "frozen": KindSpec(CAM, {}, "repeats the last image before the failure (new stamps)"),
    "dropout": KindSpec(DEP, {"fraction": 0.3, "cell": 16.0}, "random invalid (NaN) blobs", _apply_depth_dropout, (DepthFrame,)),
    "region": KindSpec(DEP, {"left": 0.3, "top": 0.3, "right": 0.7, "bottom": 0.8}, "an invalid rectangle (fractions of the image)", _apply_depth_region, (DepthFrame,)),
    "jitter": KindSpec(LID, {"sigma": 0.15}, "Gaussian point noise of `sigma` metres", _apply_lidar_jitter, (PointCloud,), "lidarjitter"),
    "blockage": KindSpec(LID, {"from": -180.0, "to": 180.0}, "no returns in an azimuth sector (degrees; full by default)", _apply_lidar_blockage, (PointCloud,)),
    "sparse": KindSpec(LID, {"keep": 0.25}, "keeps a random `keep` fraction of the points", _apply_lidar_sparse, (PointCloud,)),
    "lowres": KindSpec(EVT, {"factor": 4.0}, "event sensor with `factor` times fewer pixels per side", _apply_events_lowres, (EventPacket, EventFrame), "eventlowres"),
    "burst": KindSpec(EVT, {"density": 1.0, "window_ms": 50.0}, "burst of noise events (`density` per pixel)", _apply_events_burst, (EventPacket, EventFrame)),
    "color_cast": KindSpec(CAM, {"r": 1.25, "g": 0.85, "b": 0.45}, "per-channel gains in linear light (white balance, tinted cover)", _apply_color_cast, (CameraFrame,)),
    "smear": KindSpec(CAM, {"sigma": 4.0, "veil": 0.3}, "greasy lens: blur of `sigma` px plus a haze of `veil` of the mean brightness", _apply_smear, (CameraFrame,)),
    "occlusion": KindSpec(CAM, {"fraction": 0.4, "x": 0.3, "y": 0.6}, "textured mud blob over `fraction` of the image around (x, y)", _apply_occlusion, (CameraFrame,)),
    "scale": KindSpec(DEP, {"factor": 1.25}, "depth multiplied by `factor` (wrong baseline or unit)", _apply_depth_scale, (DepthFrame,)),
    "offset": KindSpec(DEP, {"m": 1.0}, "`m` metres added to every depth", _apply_depth_offset, (DepthFrame,)),
    "rotation": KindSpec(LID, {"roll": 0.0, "pitch": 0.0, "yaw": 3.0}, "sensor turned from its calibration (degrees, fixed axes)", _apply_lidar_rotation, (PointCloud,)),
    "translation": KindSpec(LID, {"x": 0.0, "y": 0.5, "z": 0.0}, "sensor moved from its calibration (metres, sensor frame)", _apply_lidar_translation, (PointCloud,)),
    "flicker": KindSpec(EVT, {"hz": 100.0, "fraction": 0.1, "x": 0.7, "y": 0.35, "window_ms": 50.0}, "flickering light over `fraction` of the sensor at `hz`", _apply_events_flicker, (EventPacket, EventFrame)),
    "silent": KindSpec(ANY, {}, "no messages at all"),
    "stamp_jitter": KindSpec(ANY, {"ms": 5.0}, "Gaussian stamp noise (std in ms)"),
    "stamp_delay": KindSpec(ANY, {"ms": 100.0}, "stamps late by a constant (ms)"),
    "stamp_jump": KindSpec(ANY, {"ms": 500.0}, "stamps jump back by `ms` for the interval"),
}

DELIVER_CASES: dict[str, tuple[Modality, str]] = {
    spec.deliver_case: (next(iter(spec.modalities)), kind) for kind, spec in KINDS.items() if spec.deliver_case
}


# --- parsing ---------------------------------------------------------------------------------------

_ITEM = re.compile(r"^(?P<modality>[a-z_]+):(?P<kind>[a-z_\-]+)(?:\((?P<params>[^()]*)\))?(?:@(?P<when>[^@]*))?$")
_TIME = re.compile(r"^\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s)?\s*$")


def _split_items(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    items, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def _parse_time(text: str, token: str, default_unit: str) -> float:
    m = _TIME.match(text)
    if not m:
        raise ConfigError(f"failure spec '{token}': bad time '{text}' (use seconds such as 3, 2.5s or 1500ms)")
    value = float(m["value"])
    return value / 1000.0 if (m["unit"] or default_unit) == "ms" else value


def _parse_when(when: str, token: str) -> tuple[float, float]:
    if "-" not in when:
        raise ConfigError(f"failure spec '{token}': the time must be '@START-END' (END may be empty: '@3s-')")
    start_text, end_text = when.split("-", 1)
    unit = "ms" if end_text.strip().endswith("ms") else "s"
    start = _parse_time(start_text, token, unit)
    end = _parse_time(end_text, token, unit) if end_text.strip() else math.inf
    if end <= start:
        raise ConfigError(f"failure spec '{token}': the interval ends ({end:g}s) before it starts ({start:g}s)")
    return start, end


def make_failure(modality: str | Modality, kind: str, start_s: float = 0.0, end_s: float = math.inf,
                 params: Mapping[str, Any] | None = None, token: str | None = None) -> Failure:
    """A validated Failure (defaults filled in); ``token`` is what the error messages quote."""
    token = token or f"{modality}:{kind}"
    try:
        mod = modality if isinstance(modality, Modality) else Modality.parse(str(modality))
    except ValueError as err:
        raise ConfigError(f"failure spec '{token}': {err}") from None
    name = str(kind).strip().lower().replace("-", "_")
    spec = KINDS.get(name)
    if spec is None:
        raise ConfigError(f"failure spec '{token}': unknown kind '{kind}' (choose from {', '.join(kinds_for(mod))})")
    if mod not in spec.modalities:
        raise ConfigError(f"failure spec '{token}': '{name}' does not apply to {mod.value} (choose from {', '.join(kinds_for(mod))})")
    values = dict(spec.params)
    for key, value in (params or {}).items():
        if key not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise ConfigError(f"failure spec '{token}': unknown parameter '{key}' of {name} (parameters: {known})")
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"failure spec '{token}': parameter '{key}' must be a number, got {value!r}") from None
    if not (0.0 <= start_s < end_s):
        raise ConfigError(f"failure spec '{token}': need 0 <= start < end, got {start_s:g}..{end_s:g}s")
    return Failure(mod, name, float(start_s), float(end_s), values)


def kinds_for(modality: Modality) -> list[str]:
    return [k for k, spec in KINDS.items() if modality in spec.modalities]


def parse_failure_spec(text: str) -> list[Failure]:
    """``"camera:blackout@3-6s,lidar:silent@5-8s"`` -> [Failure, ...] (empty string -> [])."""
    failures = []
    for token in _split_items(text or ""):
        m = _ITEM.match(token.replace(" ", "").lower())
        if not m:
            raise ConfigError(f"failure spec '{token}': expected MODALITY:KIND[(PARAM=VALUE,...)][@START-END], "
                              f"e.g. camera:blackout@3-6s")  # fmt: skip
        params: dict[str, str] = {}
        for pair in _split_items(m["params"] or ""):
            if "=" not in pair:
                raise ConfigError(f"failure spec '{token}': parameter '{pair}' must be NAME=VALUE")
            key, value = pair.split("=", 1)
            params[key.strip()] = value.strip()
        start, end = _parse_when(m["when"], token) if m["when"] is not None else (0.0, math.inf)
        failures.append(make_failure(m["modality"], m["kind"], start, end, params, token))
    return failures


def load_failure_schedule(value: str | Path | Sequence[Any] | None) -> list[Failure]:
    """A spec string, a YAML file path (list of spec strings or mappings), or an already-loaded list."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, Path)) and str(value).endswith((".yaml", ".yml")):
        from modseg_ros.core.config import read_yaml

        path = Path(value)
        document = read_yaml(path, "failure schedule")
        if isinstance(document, Mapping) and "failures" in document:
            document = document["failures"]
        if not isinstance(document, list):
            raise ConfigError(f"failure schedule {path}: expected a list of failures (or a 'failures:' list)")
        return load_failure_schedule(document)
    if isinstance(value, (str, Path)):
        return parse_failure_spec(str(value))
    failures: list[Failure] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            failures += parse_failure_spec(item)
        elif isinstance(item, Mapping):
            token = f"item {i}: {dict(item)}"
            for key in ("modality", "kind"):
                if key not in item:
                    raise ConfigError(f"failure schedule {token}: missing '{key}'")
            end = item.get("end")
            failures.append(make_failure(item["modality"], item["kind"], float(item.get("start", 0.0)),
                                         math.inf if end is None else float(end), item.get("params") or {}, token))  # fmt: skip
        else:
            raise ConfigError(f"failure schedule item {i}: expected a spec string or a mapping, got {item!r}")
    return failures


def format_failure_spec(failures: Iterable[Failure]) -> str:
    """The canonical spec string of a schedule (parse_failure_spec(format(x)) == x)."""
    return ",".join(str(f) for f in failures)


# --- applying --------------------------------------------------------------------------------------


def active_failures(failures: Iterable[Failure], modality: Modality, t_s: float) -> list[Failure]:
    return [f for f in failures if f.modality is modality and f.active(t_s)]


def apply_to_payload(failure: Failure, payload: Payload, rng: np.random.Generator) -> Payload:
    """The payload as the failing sensor delivers it (unchanged if the kind has no content effect)."""
    spec = failure.spec
    if spec.payload is None or not isinstance(payload, spec.payload_types):
        return payload
    return spec.payload(payload, failure.params, rng)


def apply_to_stamp(failure: Failure, stamp_ns: int, rng: np.random.Generator) -> int:
    """The header stamp under a timestamp fault (unchanged for other kinds)."""
    ms = failure.params.get("ms", 0.0)
    if failure.kind == "stamp_jitter":
        return int(stamp_ns + round(rng.normal(0.0, ms * 1e6)))
    if failure.kind == "stamp_delay":
        return int(stamp_ns + round(ms * 1e6))
    if failure.kind == "stamp_jump":
        return int(stamp_ns - round(ms * 1e6))
    return stamp_ns


def deliver_cases(failures: Iterable[Failure]) -> list[str]:
    """DELIVER corner-case tokens of the given (active) failures, in a stable order."""
    return sorted({f.spec.deliver_case for f in failures if f.spec.deliver_case})


class FailureInjector:
    """Applies a schedule to a stream of messages, one modality at a time, in time order.

    ``t_s`` is the message's time from the start of the recording (the world's sampling time, or
    the bag's log time minus its start). Content noise comes from a generator seeded by (seed,
    modality, t), stamp noise from one seeded by (seed, modality, original stamp), so the same
    message gets the same corruption whatever else is injected.
    """

    def __init__(self, failures: Sequence[Failure], seed: int = 0) -> None:
        self.failures = list(failures)
        self.seed = seed
        self._last: dict[Modality, Payload] = {}  # last delivered payload (for frozen frames)
        self._frozen: dict[Modality, Payload] = {}

    def __bool__(self) -> bool:
        return bool(self.failures)

    def rng(self, modality: Modality, t_s: float) -> np.random.Generator:
        return np.random.default_rng([self.seed, MODALITIES.index(modality), int(round(t_s * 1e6))])

    def stamp_rng(self, modality: Modality, stamp_ns: int) -> np.random.Generator:
        """Stamp noise draws from the original stamp, so every message stamped alike (an image, its
        camera_info, its ground-truth labels) gets the same shifted stamp."""
        return np.random.default_rng([self.seed, MODALITIES.index(modality), 1, max(int(stamp_ns), 0)])

    def process(self, modality: Modality, t_s: float, stamp_ns: int, payload: Payload) -> tuple[int, Payload] | None:
        """(stamp, payload) as delivered, or None when the sensor is silent at t_s."""
        active = active_failures(self.failures, modality, t_s)
        if any(f.kind == "silent" for f in active):
            return None
        rng, stamp_rng = self.rng(modality, t_s), self.stamp_rng(modality, stamp_ns)
        if any(f.kind == "frozen" for f in active):
            frozen = self._frozen.setdefault(modality, self._last.get(modality, payload))
            payload = frozen
        else:
            self._frozen.pop(modality, None)
        for failure in active:
            payload = apply_to_payload(failure, payload, rng)
            stamp_ns = apply_to_stamp(failure, stamp_ns, stamp_rng)
        if not any(f.kind == "frozen" for f in active):
            self._last[modality] = payload
        return stamp_ns, payload
