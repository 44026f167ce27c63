"""Model-aware sensor health: does each sensor still agree with the others?

Rule checks (core/health.py) catch a dead, black or silent sensor. They miss the quiet faults: a
LiDAR whose extrinsics slipped, a camera with a colour cast or a smeared lens, a depth camera with
a wrong scale. The network measures, for every frame, how well each present modality alone agrees
with the fusion of all of them (model/consistency.py: ``Prediction.modality_consistency``, in
[0, 1]). This module turns those per-frame scores into verdicts, ROS-free and clock-free (time is
the bundles' stamps):

- **Smoothing**: an exponential moving average of each modality's score with time constant
  ``smoothing_s`` (from the calibration), restarted when the set of present modalities changes
  (the score's nominal level depends on it).
- **Thresholds** per modality and set of present modalities, calibrated on nominal drives and
  stored beside the checkpoint (``<checkpoint>.consistency.json``, ``modseg calibrate``), and,
  where the camera is present, per **light**: a network's camera (and event) scores sit lower at
  night, and levels pooled over day and night sit below what a fault does by day. The camera
  image's mean intensity (``scene_brightness``) tells lit from dark, with a dead band so dusk does
  not flip the thresholds at every frame; without a camera the pooled thresholds hold. Below
  ``warn_below`` the sensor is WARN ("inconsistent with other sensors"), below the stricter
  ``exclude_below`` it is also left out of the fusion (when ``exclude`` is on).
- **Hysteresis**: a verdict is entered after the smoothed score stayed below its threshold for
  ``enter_s`` and left after it stayed at or above ``recover_above`` (between the warn threshold
  and the nominal median) for ``recover_s``; one hard frame moves neither.
- **One culprit at a time**: the reference is the fusion of every present sensor, faulty one
  included, so a badly faulty sensor also drags its partners' scores down. Only the sensor furthest
  below its nominal level (in units of its warn band) can enter a verdict on a frame; the others'
  timers restart. A verdict already entered is left by recovery only.

With fewer than three present modalities, or a set the calibration does not cover, a score cannot
be judged; the verdicts then hold until scores can be judged again.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from modseg_ros.core.params import Parameter, ParameterReader
from modseg_ros.core.types import MODALITIES, CameraFrame, HealthLevel, Modality, SensorSample, subset_name
from modseg_ros.errors import ConfigError

NS = 1_000_000_000
MIN_MODALITIES = 3  # present modalities a score needs: a majority to agree with
FORMAT = "modseg-consistency"
VERSION = 2  # 2: thresholds per light; version 1 files (pooled thresholds only) still load
LIGHT_DEAD_BAND = 0.15  # a lit scene turns dark below dark_below, a dark one lit above dark_below × (1 + this)


class Light(str, Enum):
    """The light a frame was taken in, as the camera sees it."""

    LIT = "lit"
    DARK = "dark"


def scene_brightness(samples: Mapping[Modality, SensorSample]) -> float:
    """Mean intensity (0-255) of a bundle's camera image, on a grid of at most 64×128 of its
    pixels; NaN without a camera."""
    camera = samples.get(Modality.CAMERA)
    if camera is None or not isinstance(camera.data, CameraFrame) or not camera.data.image.size:
        return math.nan
    image = camera.data.image
    return float(image[:: max(1, image.shape[0] // 64), :: max(1, image.shape[1] // 128)].mean())


def calibration_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's consistency calibration lives: ``<name>.consistency.json`` beside it."""
    return Path(checkpoint).with_suffix("").with_suffix(".consistency.json")


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of one modality's smoothed score, for one set of present modalities."""

    median: float  # nominal median of the smoothed score
    warn_below: float
    exclude_below: float
    recover_above: float

    def __post_init__(self) -> None:
        if not self.exclude_below <= self.warn_below < self.recover_above <= self.median:
            raise ValueError(f"thresholds must satisfy exclude_below <= warn_below < recover_above <= median, got {self}")


@dataclass(frozen=True)
class ConsistencyCalibration:
    """Thresholds per set of present modalities (subset name, e.g. ``CDLE``) and modality, pooled
    over every frame and, for the sets with the camera, per light."""

    model: str  # checkpoint name
    weights_sha256: str  # of the checkpoint's weights, so a calibration never judges another model
    smoothing_s: float  # EMA time constant the thresholds were calibrated with
    thresholds: Mapping[str, Mapping[Modality, Thresholds]]
    provenance: Mapping[str, Any] = field(default_factory=dict)  # data, frames, quantiles, command
    by_light: Mapping[Light, Mapping[str, Mapping[Modality, Thresholds]]] = field(default_factory=dict)
    dark_below: float = math.nan  # camera mean intensity below which a frame is dark (by_light)

    def for_subset(self, present: Iterable[Modality], light: Light | None = None) -> Mapping[Modality, Thresholds] | None:
        """The thresholds of a set of present modalities: those of ``light`` where calibrated, else pooled."""
        return self.lit_by(present, light)[0]

    def lit_by(self, present: Iterable[Modality], light: Light | None) -> tuple[Mapping[Modality, Thresholds] | None, Light | None]:
        """``for_subset`` and the light its thresholds are for (None: pooled)."""
        subset = subset_name(present)
        per_light = self.by_light.get(light, {}).get(subset) if light is not None else None
        return (per_light, light) if per_light is not None else (self.thresholds.get(subset), None)

    def light(self, brightness: float, previous: Light | None) -> Light | None:
        """The light of a frame of camera mean intensity ``brightness`` (NaN: no camera), with the
        dead band above ``dark_below``; None without per-light thresholds or a camera."""
        if not self.by_light or math.isnan(brightness):
            return None
        if previous is Light.DARK:
            return Light.LIT if brightness > self.dark_below * (1.0 + LIGHT_DEAD_BAND) else Light.DARK
        return Light.DARK if brightness < self.dark_below else Light.LIT

    def to_dict(self) -> dict[str, Any]:
        d = {"format": FORMAT, "version": VERSION, "model": self.model, "weights_sha256": self.weights_sha256,
             "smoothing_s": self.smoothing_s, "thresholds": _table_dict(self.thresholds)}  # fmt: skip
        if self.by_light:
            d["light"] = {"dark_below": self.dark_below, "thresholds": {l.value: _table_dict(t) for l, t in self.by_light.items()}}
        d["provenance"] = dict(self.provenance)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str) -> ConsistencyCalibration:
        if d.get("format") != FORMAT:
            raise ConfigError(f"{source} is not a consistency calibration (format {d.get('format')!r}, expected {FORMAT!r})")
        if d.get("version") not in (1, VERSION):
            raise ConfigError(f"{source}: unsupported consistency calibration version {d.get('version')!r} (this code reads 1 and {VERSION})")
        try:
            light = d.get("light") or {}
            by_light = {Light(name): _table(t) for name, t in (light.get("thresholds") or {}).items()}
            dark_below = float(light["dark_below"]) if by_light else math.nan
            return cls(str(d["model"]), str(d["weights_sha256"]), float(d["smoothing_s"]), _table(d["thresholds"]),
                       dict(d.get("provenance") or {}), by_light, dark_below)  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ConfigError(f"{source}: malformed consistency calibration ({err})") from None

    @classmethod
    def load(cls, path: str | Path) -> ConsistencyCalibration:
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except OSError as err:
            raise ConfigError(f"cannot read consistency calibration {path}: {err.strerror}") from err
        except json.JSONDecodeError as err:
            raise ConfigError(f"consistency calibration {path} is not valid JSON: {err}") from err
        if not isinstance(document, Mapping):
            raise ConfigError(f"consistency calibration {path} must be a JSON object")
        return cls.from_dict(document, str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _table_dict(table: Mapping[str, Mapping[Modality, Thresholds]]) -> dict:
    return {subset: {m.value: t.__dict__ for m, t in per.items()} for subset, per in table.items()}


def _table(d: Mapping[str, Any]) -> dict[str, dict[Modality, Thresholds]]:
    return {str(subset): {Modality.parse(m): Thresholds(**{k: float(v) for k, v in t.items()}) for m, t in per.items()}
            for subset, per in d.items()}  # fmt: skip


@dataclass(frozen=True)
class ConsistencySettings:
    """The node's parameters of the check (``health.consistency.*``)."""

    enabled: bool = True  # compute and judge the scores (off: not computed, NaN in info and diagnostics)
    calibration: str = ""  # thresholds file; "" = <checkpoint>.consistency.json beside the checkpoint
    exclude: bool = True  # leave a sensor below exclude_below out of the fusion
    enter_s: float = 0.5  # below a threshold this long: WARN / excluded
    recover_s: float = 1.0  # at or above recover_above this long: OK again

    PARAMETERS = (
        Parameter("health.consistency.enabled", "compute and judge the scores (judging needs a calibration); false: not computed", "bool"),
        Parameter("health.consistency.calibration", "thresholds file; \"\" = <checkpoint>.consistency.json beside the model", "path"),
        Parameter("health.consistency.exclude", "leave a sensor past its exclusion threshold out of the fusion (all three checks)", "bool", read_only=False),
        Parameter("health.consistency.enter_s", "past a threshold this long: WARN / excluded (all three checks)", ">= 0 s", read_only=False),
        Parameter("health.consistency.recover_s", "back within it this long: OK, fused again (all three checks)", ">= 0 s", read_only=False),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader) -> ConsistencySettings:
        return cls(enabled=r.boolean("health.consistency.enabled"), calibration=r.string("health.consistency.calibration"),
                   exclude=r.boolean("health.consistency.exclude"), enter_s=r.number("health.consistency.enter_s", 0.0),
                   recover_s=r.number("health.consistency.recover_s", 0.0))  # fmt: skip


# --- calibration ------------------------------------------------------------------------------------


def smooth(stamps_ns: Sequence[int], scores: Sequence[float], time_constant_s: float) -> np.ndarray:
    """The EMA the monitor applies, over one uninterrupted series (NaN scores are skipped)."""
    out = np.full(len(scores), np.nan)
    value, last = math.nan, None
    for i, (stamp, score) in enumerate(zip(stamps_ns, scores)):
        if math.isnan(score):
            continue
        value = ema(value, score, None if last is None else (stamp - last) / NS, time_constant_s)
        last = stamp
        out[i] = value
    return out


def ema(value: float, score: float, dt_s: float | None, time_constant_s: float) -> float:
    if dt_s is None or math.isnan(value) or time_constant_s <= 0:
        return score
    alpha = 1.0 - math.exp(-max(dt_s, 0.0) / time_constant_s)
    return value + alpha * (score - value)


@dataclass(frozen=True)
class CalibrationRule:
    """How nominal smoothed scores become thresholds (``modseg calibrate`` options).

    The warn threshold sits ``warn_margin`` nominal spreads below the lowest nominal smoothed
    score (after the first ``settle_s`` of each series, while the EMA settles); the spread is the
    distance from the median to the 5th percentile. The same rule runs on the values of every
    frame (pooled) and, where the camera is present, on those of the lit and of the dark frames
    (``dark_below``) apart, when each has ``min_light_frames``. ``exclude_below`` is ``exclude_factor`` times
    as far below the median as ``warn_below``; ``recover_above`` is halfway between ``warn_below``
    and the median. Three spreads: with one, 25 s of nominal drives (one per condition) put the
    warn level inside the nominal range of unseen drives (one alarm per 5 s drive, docs/benchmarks-log/health.md).
    """

    smoothing_s: float = 0.5
    warn_margin: float = 3.0
    exclude_factor: float = 2.0
    settle_s: float = 1.0
    # Camera mean intensity (0-255) below which a frame is dark: the world's night drives read
    # 43-56, its lit ones 91-183 with 40 % of the lens covered in mud.
    dark_below: float = 80.0
    min_light_frames: int = 200  # per-light thresholds need at least this many nominal values (10 s at 20 Hz)


def thresholds_from(smoothed: np.ndarray, rule: CalibrationRule) -> Thresholds:
    values = smoothed[np.isfinite(smoothed)]
    median = float(np.median(values))
    spread = max(median - float(np.quantile(values, 0.05)), 1e-4)
    warn = float(values.min()) - rule.warn_margin * spread
    band = median - warn
    return Thresholds(median=median, warn_below=warn, exclude_below=median - rule.exclude_factor * band,
                      recover_above=warn + 0.5 * band)  # fmt: skip


# --- the monitor ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The consistency check's state for one modality."""

    modality: Modality
    score: float  # smoothed score (NaN before any judgeable frame)
    frame_score: float  # the last frame's score
    level: HealthLevel  # OK or WARN
    excluded: bool  # left out of the fusion
    reason: str
    thresholds: Thresholds | None  # in force for the current set of present modalities
    light: Light | None = None  # whose thresholds those are (None: pooled over lit and dark frames)

    def details(self) -> dict[str, float | int | str]:
        """Key-values for /diagnostics."""
        out: dict[str, float | int | str] = {"consistency": fmt_score(self.score), "consistency_frame": fmt_score(self.frame_score),
                                             "excluded_from_fusion": self.excluded}  # fmt: skip
        if self.thresholds is not None:
            out.update(consistency_warn_below=fmt_score(self.thresholds.warn_below),
                       consistency_exclude_below=fmt_score(self.thresholds.exclude_below),
                       consistency_light=self.light.value if self.light is not None else "any")  # fmt: skip
        return out


def _run_start(since: int | None, now_ns: int, condition: bool) -> int | None:
    """When an uninterrupted run of ``condition`` started (None when it does not hold now)."""
    if not condition:
        return None
    return now_ns if since is None else since


@dataclass
class Hysteresis:
    """A cross-check's verdict on one sensor over frames: WARN once the warn condition has held
    for ``enter_ns``, excluded once the exclusion condition has, OK and fused again once the
    recovery condition has held for ``recover_ns``. The frames' stamps are the clock."""

    level: HealthLevel = HealthLevel.OK
    excluded: bool = False
    warn_since: int | None = None
    exclude_since: int | None = None
    recovered_since: int | None = None

    def step(self, now_ns: int, warn: bool, exclude: bool, recovered: bool, enter_ns: int, recover_ns: int) -> None:
        self.warn_since = _run_start(self.warn_since, now_ns, warn)
        self.exclude_since = _run_start(self.exclude_since, now_ns, exclude)
        self.recovered_since = _run_start(self.recovered_since, now_ns, recovered)
        if self.warn_since is not None and now_ns - self.warn_since >= enter_ns:
            self.level = HealthLevel.WARN
        if self.exclude_since is not None and now_ns - self.exclude_since >= enter_ns:
            self.excluded = True
        if self.recovered_since is not None and now_ns - self.recovered_since >= recover_ns:
            self.level, self.excluded = HealthLevel.OK, False

    def restart(self) -> None:
        """Forget the running timers (the verdict holds): a jump back in time, another reference."""
        self.warn_since = self.exclude_since = self.recovered_since = None


def fmt_score(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


@dataclass
class _Track:
    subset: str = ""
    smoothed: float = math.nan
    frame: float = math.nan
    last_ns: int | None = None
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    thresholds: Thresholds | None = None
    light: Light | None = None  # of the thresholds


class ConsistencyMonitor:
    """Per-modality verdicts from per-frame consistency scores (see the module docstring)."""

    def __init__(self, settings: ConsistencySettings, calibration: ConsistencyCalibration | None) -> None:
        self.settings = settings
        self.calibration = calibration
        self._tracks: dict[Modality, _Track] = {m: _Track() for m in MODALITIES}
        self.light: Light | None = None  # of the last frame with a camera (None: pooled thresholds)

    @property
    def judging(self) -> bool:
        return self.settings.enabled and self.calibration is not None

    @property
    def excluded(self) -> frozenset[Modality]:
        """Modalities to leave out of the fusion now."""
        if not (self.judging and self.settings.exclude):
            return frozenset()
        return frozenset(m for m, t in self._tracks.items() if t.hysteresis.excluded)

    def update(self, stamp_ns: int, scores: Mapping[Modality, float], brightness: float = math.nan) -> dict[Modality, Verdict]:
        """One segmented frame: its stamp, the consistency score of each present modality and the
        camera image's ``scene_brightness`` (NaN without a camera)."""
        present = tuple(m for m in MODALITIES if m in scores)
        subset = subset_name(present)
        per_subset, light = None, None
        if self.calibration is not None:
            self.light = self.calibration.light(brightness, self.light)
            per_subset, light = self.calibration.lit_by(present, self.light)
        for modality in present:
            track = self._tracks[modality]
            score = float(scores[modality])
            track.frame = score
            if math.isnan(score):
                continue
            if track.last_ns is not None and (stamp_ns < track.last_ns or track.subset != subset):
                track.smoothed, track.last_ns = math.nan, None  # a jump back (bag loop) or another reference
                track.hysteresis.restart()
            dt = None if track.last_ns is None else (stamp_ns - track.last_ns) / NS
            smoothing = self.calibration.smoothing_s if self.calibration is not None else 0.0
            track.smoothed = ema(track.smoothed, score, dt, smoothing)
            track.last_ns, track.subset = stamp_ns, subset
            track.thresholds = per_subset.get(modality) if per_subset is not None else None
            track.light = light
        if self.judging:
            judged = [m for m in present if self._tracks[m].thresholds is not None and not math.isnan(self._tracks[m].smoothed)]
            culprit = max(judged, key=lambda m: self._deficit(self._tracks[m]), default=None)
            for modality in judged:
                self._judge(self._tracks[modality], stamp_ns, may_fail=modality is culprit)
        return self.verdicts()

    @staticmethod
    def _deficit(track: _Track) -> float:
        """How far below its nominal median a smoothed score is, in units of its warn band."""
        t = track.thresholds
        return (t.median - track.smoothed) / max(t.median - t.warn_below, 1e-9)

    def _judge(self, track: _Track, now_ns: int, may_fail: bool) -> None:
        t, s = track.thresholds, track.smoothed
        track.hysteresis.step(now_ns, warn=may_fail and s < t.warn_below, exclude=may_fail and s < t.exclude_below,
                              recovered=s >= t.recover_above, enter_ns=int(self.settings.enter_s * NS),
                              recover_ns=int(self.settings.recover_s * NS))  # fmt: skip

    def verdicts(self) -> dict[Modality, Verdict]:
        return {m: self.verdict(m) for m in MODALITIES}

    def verdict(self, modality: Modality) -> Verdict:
        track = self._tracks[modality]
        judged = self.judging
        level = track.hysteresis.level if judged else HealthLevel.OK
        excluded = track.hysteresis.excluded and judged and self.settings.exclude
        reason = ""
        if level is not HealthLevel.OK:
            if track.thresholds is not None and not math.isnan(track.smoothed):
                reason = (f"inconsistent with other sensors: consistency {track.smoothed:.2f} "
                          f"< {track.thresholds.warn_below:.2f}")  # fmt: skip
            else:
                reason = "inconsistent with other sensors (verdict held: too few sensors to compare now)"
            if excluded:
                reason += "; excluded from fusion"
        return Verdict(modality, track.smoothed, track.frame, level, excluded, reason, track.thresholds, track.light)
