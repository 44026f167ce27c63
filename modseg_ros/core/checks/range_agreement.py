"""Do the depth camera and the LiDAR see the same ranges? A geometric cross-check, model-free.

Both are encoded on the camera grid with the same logarithmic code of the camera depth z
(core/encoding.py; one code step is ln(far / near) / 254, 2.4 % of the range at the defaults), so
where a pixel holds both, their codes agree up to noise and the parallax between the two mounts.
Two kinds of quiet fault move them apart, each in its own statistic of the per-pixel difference
(depth code - LiDAR code):

- a depth **scale or offset** error moves every depth range the same way: the **median**
  difference leaves zero (×1.25: -9 codes);
- a LiDAR whose **extrinsics slipped** puts its points beside the surfaces the depth camera sees,
  and moving them back across the image puts them on the surfaces again: the **misregistration**
  (``compare_ranges``) rises while the median stays.

Blame follows the statistic that moved: a shift is the depth camera's (LiDAR ranges are time of
flight, absolute; stereo and structured-light depth get scale and offset wrong), misregistration
is the LiDAR's (the depth camera shares the camera's housing and calibration; the LiDAR is
mounted apart). The LiDAR is judged only while the medians agree (``MEDIANS_AGREE_CODES``). A
LiDAR moved along its optical axis shifts every range like a depth offset and is blamed on the
depth camera: the limit of comparing two sensors.

Each statistic is smoothed (EMA, time constant ``smoothing_s``) and judged with the same
hysteresis as the network's consistency check (core/checks/consistency.py): WARN after ``enter_s``
beyond its limit, excluded from the fusion (when ``health.consistency.exclude`` is on) after
``enter_s`` beyond twice the limit, OK again after ``recover_s`` within half of it. Pure functions
of (stamps, encodings): no clock, no thread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from modseg_ros.core.checks.consistency import NS, ConsistencySettings, Hysteresis, ema, fmt_score
from modseg_ros.core.encoding import EncodingConfig
from modseg_ros.core.params import Parameter, ParameterReader
from modseg_ros.core.types import HealthLevel, Modality


@dataclass(frozen=True)
class RangeAgreementSettings:
    """``health.range_agreement.*``."""

    enabled: bool = True
    max_shift_codes: float = 3.0  # |smoothed median depth - LiDAR code| beyond this: the depth camera is off
    max_misregistration: float = 0.2  # smoothed misregistration beyond this: the LiDAR's extrinsics are off
    tolerance_codes: int = 4  # a pixel further than this from the median is off the surface (4 codes ≈ 10 %)
    min_pixels: int = 200  # fewer pixels with both ranges: the frame is not judged
    smoothing_s: float = 0.5
    enter_s: float = 0.5
    recover_s: float = 1.0
    exclude: bool = False  # leave the blamed sensor out of the fusion past twice its limit (health.consistency.exclude)

    PARAMETERS = (
        Parameter("health.range_agreement.enabled", "judge depth against LiDAR ranges where both see a pixel", "bool"),
        Parameter("health.range_agreement.max_shift_codes", "|median depth - LiDAR range code| beyond this: depth WARN (1 code = 2.4 % of range)", "> 0", read_only=False),
        Parameter("health.range_agreement.max_misregistration", "share of off-surface LiDAR points a shift across the image puts back, beyond it: LiDAR WARN", "> 0", read_only=False),
        Parameter("health.range_agreement.tolerance_codes", "a point further than this from the median is off the surface", ">= 1", read_only=False),
        Parameter("health.range_agreement.min_pixels", "fewer pixels with both ranges: the frame is not judged", ">= 1", read_only=False),
        Parameter("health.range_agreement.smoothing_s", "EMA time constant of both statistics", ">= 0 s", read_only=False),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader, shared: ConsistencySettings) -> RangeAgreementSettings:
        """``health.range_agreement.*``; enter, recover and exclude are the consistency check's."""
        p = "health.range_agreement"
        return cls(enabled=r.boolean(f"{p}.enabled"), max_shift_codes=r.positive(f"{p}.max_shift_codes"),
                   max_misregistration=r.positive(f"{p}.max_misregistration"),
                   tolerance_codes=r.integer(f"{p}.tolerance_codes", 1), min_pixels=r.integer(f"{p}.min_pixels", 1),
                   smoothing_s=r.number(f"{p}.smoothing_s", 0.0), enter_s=shared.enter_s, recover_s=shared.recover_s,
                   exclude=shared.exclude)  # fmt: skip


# A slipped LiDAR leaves the median difference within this (0.17 codes at 3° yaw on world drives);
# a depth scale or offset moves it past it within a frame or two.
MEDIANS_AGREE_CODES = 1.0


@dataclass(frozen=True)
class RangeStats:
    """One frame's comparison."""

    pixels: int  # pixels with both a depth and a LiDAR range
    shift_codes: float  # median of depth code - LiDAR code
    off_surface: float  # share of those pixels further than the tolerance from the median
    misregistration: float  # share of the off-surface pixels that the best image shift of the LiDAR puts back
    best_offset_px: tuple[int, int]  # that shift (rows, columns); (0, 0) when none is better


# Image shifts of the LiDAR points tried against the depth (rows, columns): yaw and sideways moves
# are horizontal, pitch and height vertical. 16 px is 3.6° at the shipped rig's 512-px width.
OFFSETS_PX = ((0, 0), *((0, c) for c in (-16, -12, -8, -4, -2, 2, 4, 8, 12, 16)), *((r, 0) for r in (-8, -4, -2, 2, 4, 8)))
# Off-surface shares below this are noise: the misregistration is taken relative to at least it.
OFF_SURFACE_FLOOR = 0.05


def compare_ranges(depth: np.ndarray, lidar: np.ndarray, tolerance_codes: int) -> RangeStats:
    """The depth and LiDAR encodings' range codes (channel 0, 0 = no range) compared where both exist.

    The off-surface share alone depends on the scene: the two mounts' parallax leaves LiDAR points
    beside depth edges on every drive (nominal world drives: 1-5 %). What a slipped LiDAR changes
    is where its points fit best: shifted back by its error, they lie on the depth surfaces again,
    while nominal points fit best where they are. So the LiDAR points are also compared at the image
    offsets ``OFFSETS_PX``, and the misregistration is the share of off-surface points the best
    offset puts back on the surfaces (world drives, smoothed: nominal ≤ 0.05; 3° yaw and 0.5 m sideways ≈ 0.87).
    """
    height, width = depth.shape[:2]
    flat_depth = depth[..., 0].ravel()
    points = np.flatnonzero(lidar[..., 0])  # flat pixel index of each LiDAR point
    rows, cols = np.divmod(points, width)
    codes = lidar[..., 0].ravel()[points].astype(np.int16)
    seen = flat_depth[points].astype(np.int16)
    both = seen > 0
    if not both.any():
        return RangeStats(0, math.nan, math.nan, math.nan, (0, 0))
    shift = float(np.median(seen[both] - codes[both]))
    expected = codes + np.int16(round(shift))  # the depth code each LiDAR point should find where it lands
    off_at: dict[tuple[int, int], float] = {}
    for dr, dc in OFFSETS_PX:
        inside = (rows >= -dr) & (rows < height - dr) & (cols >= -dc) & (cols < width - dc)
        found = flat_depth[points[inside] + (dr * width + dc)].astype(np.int16)
        valid = found > 0
        if valid.any():
            off_at[(dr, dc)] = float(np.count_nonzero(np.abs(found[valid] - expected[inside][valid]) > tolerance_codes) / valid.sum())
    off = off_at[(0, 0)]
    best = min(off_at, key=off_at.get)
    return RangeStats(int(both.sum()), shift, off, (off - off_at[best]) / max(off, OFF_SURFACE_FLOOR), best)


@dataclass(frozen=True)
class RangeVerdict:
    """The range check's state for one of the two sensors."""

    modality: Modality
    statistic: str  # what this sensor is judged by: "shift" (depth) or "misregistration" (LiDAR)
    value: float  # smoothed statistic (NaN before any judged frame)
    limit: float
    level: HealthLevel  # OK or WARN
    excluded: bool
    reason: str

    def details(self) -> dict[str, float | int | str]:
        """Key-values for /diagnostics."""
        return {f"range_{self.statistic}": fmt_score(self.value), f"range_{self.statistic}_limit": fmt_score(self.limit),
                "range_excluded_from_fusion": self.excluded}  # fmt: skip


@dataclass
class _Track:
    value: float = math.nan  # smoothed: signed median shift (depth), misregistration (LiDAR)
    last_ns: int | None = None
    hysteresis: Hysteresis = field(default_factory=Hysteresis)


_JUDGED_BY = {Modality.DEPTH: "shift", Modality.LIDAR: "misregistration"}


class RangeAgreementMonitor:
    """Verdicts on the depth camera and the LiDAR from their frames' range comparison."""

    def __init__(self, settings: RangeAgreementSettings, encoding: EncodingConfig) -> None:
        self.settings = settings
        self._code_step = math.log(encoding.far_m / encoding.near_m) / 254.0  # ln(range ratio) per code
        self._tracks = {m: _Track() for m in _JUDGED_BY}
        self.last: RangeStats | None = None  # the last frame's comparison

    @property
    def excluded(self) -> frozenset[Modality]:
        if not (self.settings.enabled and self.settings.exclude):
            return frozenset()
        return frozenset(m for m, t in self._tracks.items() if t.hysteresis.excluded)

    def limit(self, modality: Modality) -> float:
        return self.settings.max_shift_codes if modality is Modality.DEPTH else self.settings.max_misregistration

    def update(self, stamp_ns: int, depth: np.ndarray | None, lidar: np.ndarray | None) -> dict[Modality, RangeVerdict]:
        """One segmented frame's encodings (None: not in the bundle; the verdicts then hold)."""
        s = self.settings
        if not s.enabled or depth is None or lidar is None:
            return self.verdicts()
        stats = compare_ranges(depth, lidar, s.tolerance_codes)
        self.last = stats
        if stats.pixels < s.min_pixels:
            return self.verdicts()
        depth_agrees = True
        for modality, track in self._tracks.items():  # depth first
            value = stats.shift_codes if modality is Modality.DEPTH else stats.misregistration
            if track.last_ns is not None and stamp_ns < track.last_ns:  # a jump back (bag loop): start again
                track.value, track.last_ns = math.nan, None
                track.hysteresis.restart()
            dt = None if track.last_ns is None else (stamp_ns - track.last_ns) / NS
            track.value, track.last_ns = ema(track.value, value, dt, s.smoothing_s), stamp_ns
            # A depth offset shifts near and far ranges by different codes, which also spreads them
            # around the median: the spread is the LiDAR's to answer for only while the medians agree.
            self._judge(track, stamp_ns, self.limit(modality), may_fail=depth_agrees)
            depth_agrees = abs(track.value) <= MEDIANS_AGREE_CODES
        return self.verdicts()

    def _judge(self, track: _Track, now_ns: int, limit: float, may_fail: bool) -> None:
        magnitude = abs(track.value)
        track.hysteresis.step(now_ns, warn=may_fail and magnitude > limit, exclude=may_fail and magnitude > 2.0 * limit,
                              recovered=magnitude <= 0.5 * limit, enter_ns=int(self.settings.enter_s * NS),
                              recover_ns=int(self.settings.recover_s * NS))  # fmt: skip

    def verdicts(self) -> dict[Modality, RangeVerdict]:
        return {m: self.verdict(m) for m in self._tracks}

    def verdict(self, modality: Modality) -> RangeVerdict:
        track, limit = self._tracks[modality], self.limit(modality)
        level, excluded = track.hysteresis.level, track.hysteresis.excluded and modality in self.excluded
        reason = ""
        if level is not HealthLevel.OK:
            if modality is Modality.DEPTH:  # a smaller code is a longer range
                reason = (f"depth ranges disagree with the LiDAR's: median {track.value:+.1f} codes, beyond ±{limit:g} "
                          f"(depth ≈ ×{math.exp(-track.value * self._code_step):.2f} the LiDAR's)")  # fmt: skip
            else:
                offset = self.last.best_offset_px if self.last is not None else (0, 0)
                reason = (f"LiDAR points fit the depth surfaces better moved by {offset[1]:+d} px across, {offset[0]:+d} px "
                          f"down: misregistration {track.value:.2f} > {limit:g} (extrinsics?)")  # fmt: skip
            if excluded:
                reason += "; excluded from fusion"
        return RangeVerdict(modality, _JUDGED_BY[modality], track.value, limit, level, excluded, reason)
