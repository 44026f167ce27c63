"""Does the camera see the motion the event camera sees? A cross-check of the camera, model-free.

An event camera fires where brightness changes: while the vehicle moves, over much of the view.
Mounted beside the camera (the rig's assumption, core/encoding.py), it sees the same scene, so the
camera image changes there too. Mud or a leaf on the lens, or a region of the image that froze,
stands still while the event camera keeps seeing the scene move behind it. Per bundle, on square
blocks of the camera grid, ``blocks_across`` of them across (512×256: 16-pixel blocks):

- **moving** blocks: those where at least ``min_event_share`` of the event frame's pixels hold events;
- **still** blocks: of those, the ones whose mean camera intensity changed by less than
  ``still_below`` grey levels since the camera image of ``lag_s`` before. Block means average the
  sensor noise (and the texture of mud) away; half a second lets the scene move further than it
  does between two frames;
- the statistic: the **still share**, still blocks / moving blocks (judged with at least
  ``min_moving_blocks`` moving blocks; a stopped vehicle gives no events and is not judged).

On world drives (docs/benchmarks-log/health.md "Camera against events") the smoothed share stays at or below 0.24
on nominal drives of every condition (sky and plain road move little) and 0.25 under flickering
events; with 40 % of the lens covered it reads 0.31 or more from a second after the onset (medians
0.40-0.59), by day and at night, where the network's consistency score cannot tell the dark mud
from the dark scene.

Blame is the camera's: the event camera's own faults add events (flicker: the camera still moves
behind them) or remove them (fewer moving blocks), neither makes the camera stand still. Smoothing
and hysteresis as the range check (core/checks/range_agreement.py): WARN after ``enter_s`` beyond
``max_still_share``, excluded from the fusion (when ``health.consistency.exclude`` is on) after
``enter_s`` beyond ``exclude_still_share``, OK again after ``recover_s`` within half the limit.
Pure functions of (stamps, encodings): no clock, no thread.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from modseg_ros.core.checks.consistency import NS, ConsistencySettings, Hysteresis, ema, fmt_score
from modseg_ros.core.params import Parameter, ParameterReader
from modseg_ros.core.types import HealthLevel, Modality
from modseg_ros.errors import ConfigError


@dataclass(frozen=True)
class MotionAgreementSettings:
    """``health.motion_agreement.*``."""

    enabled: bool = True
    blocks_across: int = 32  # square blocks across the camera grid (512×256: 16-pixel blocks, 32×16 of them)
    lag_s: float = 0.5  # camera image compared with the one this long before
    still_below: float = 1.5  # block mean changed by less than this (grey levels, 0-255): still
    min_event_share: float = 0.02  # share of a block's pixels holding events that makes it moving (16 px: 6)
    min_moving_blocks: int = 8  # fewer moving blocks: the frame is not judged
    max_still_share: float = 0.3  # smoothed still share beyond this: camera WARN
    exclude_still_share: float = 0.4  # ... beyond this: excluded from the fusion (health.consistency.exclude)
    smoothing_s: float = 0.5
    enter_s: float = 0.5
    recover_s: float = 1.0
    exclude: bool = False

    PARAMETERS = (
        Parameter("health.motion_agreement.enabled", "judge the camera against the event camera's motion", "bool"),
        Parameter("health.motion_agreement.blocks_across", "square blocks across the camera grid", ">= 1"),
        Parameter("health.motion_agreement.lag_s", "camera block means compared with those this long before", "> 0 s"),
        Parameter("health.motion_agreement.still_below", "a block whose mean moved less than this (grey levels) is still", "> 0", read_only=False),
        Parameter("health.motion_agreement.min_event_share", "share of a block's pixels with events that makes it moving", "> 0", read_only=False),
        Parameter("health.motion_agreement.min_moving_blocks", "fewer moving blocks (a stopped vehicle): the frame is not judged", ">= 1", read_only=False),
        Parameter("health.motion_agreement.max_still_share", "share of moving blocks the camera sees still, beyond it: camera WARN", "> 0", read_only=False),
        Parameter("health.motion_agreement.exclude_still_share", "beyond this: excluded from the fusion (health.consistency.exclude)", ">= max_still_share", read_only=False),
        Parameter("health.motion_agreement.smoothing_s", "EMA time constant of the share", ">= 0 s", read_only=False),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader, shared: ConsistencySettings) -> MotionAgreementSettings:
        """``health.motion_agreement.*``; enter, recover and exclude are the consistency check's."""
        p = "health.motion_agreement"
        settings = cls(enabled=r.boolean(f"{p}.enabled"), blocks_across=r.integer(f"{p}.blocks_across", 1),
                       lag_s=r.positive(f"{p}.lag_s"), still_below=r.positive(f"{p}.still_below"),
                       min_event_share=r.positive(f"{p}.min_event_share"),
                       min_moving_blocks=r.integer(f"{p}.min_moving_blocks", 1),
                       max_still_share=r.positive(f"{p}.max_still_share"),
                       exclude_still_share=r.positive(f"{p}.exclude_still_share"),
                       smoothing_s=r.number(f"{p}.smoothing_s", 0.0), enter_s=shared.enter_s, recover_s=shared.recover_s,
                       exclude=shared.exclude)  # fmt: skip
        if settings.exclude_still_share < settings.max_still_share:
            raise ConfigError(f"parameter '{p}.exclude_still_share' must be at least '{p}.max_still_share' "
                              f"({settings.max_still_share:g}), got {settings.exclude_still_share:g}")  # fmt: skip
        return settings


@dataclass(frozen=True)
class MotionStats:
    """One bundle's comparison."""

    moving_blocks: int
    still_blocks: int  # of the moving ones

    @property
    def still_share(self) -> float:
        return self.still_blocks / self.moving_blocks if self.moving_blocks else math.nan


def _block_sums(image: np.ndarray, block_px: int) -> np.ndarray:
    """H×W×C uint8 -> the sum over each whole block and the channels (H // b, W // b), as integers
    (an integer sum of the uint8 pixels is several times faster than a float mean)."""
    rows, cols = image.shape[0] // block_px, image.shape[1] // block_px
    blocks = image[: rows * block_px, : cols * block_px].reshape(rows, block_px, cols, block_px * image.shape[2])
    return blocks.sum(axis=(1, 3), dtype=np.uint32)


def block_means(image: np.ndarray, block_px: int) -> np.ndarray:
    """H×W×3 uint8 camera image -> mean intensity of each whole block (H // b, W // b), float32."""
    return _block_sums(image, block_px).astype(np.float32) / np.float32(block_px * block_px * image.shape[2])


def event_pixels(events: np.ndarray, block_px: int) -> np.ndarray:
    """Event frame encoding (core/encoding.py: channel 2 is non-zero where an event fell) -> number
    of pixels with events in each whole block."""
    return _block_sums((events[..., 2:3] > 0).view(np.uint8), block_px)


def block_side(width: int, settings: MotionAgreementSettings) -> int:
    """Pixels per block side on a camera grid ``width`` pixels wide."""
    return max(1, width // settings.blocks_across)


def compare_motion(now: np.ndarray, before: np.ndarray, events: np.ndarray, settings: MotionAgreementSettings) -> MotionStats:
    """Block means of the camera now and ``lag_s`` before, and the event frame -> the comparison."""
    side = block_side(events.shape[1], settings)
    moving = event_pixels(events, side) >= settings.min_event_share * side * side
    still = np.abs(now - before) < settings.still_below
    return MotionStats(int(moving.sum()), int((moving & still).sum()))


@dataclass(frozen=True)
class MotionVerdict:
    """The check's state for the camera."""

    modality: Modality
    value: float  # smoothed still share (NaN before any judged frame)
    limit: float
    level: HealthLevel  # OK or WARN
    excluded: bool
    reason: str

    def details(self) -> dict[str, float | int | str]:
        """Key-values for /diagnostics."""
        return {"motion_still_share": fmt_score(self.value), "motion_still_share_limit": fmt_score(self.limit),
                "motion_excluded_from_fusion": self.excluded}  # fmt: skip


@dataclass
class _Track:
    value: float = math.nan  # smoothed still share
    last_ns: int | None = None
    start_ns: int | None = None  # of the first judged frame
    count: int = 0  # judged frames since then
    hysteresis: Hysteresis = field(default_factory=Hysteresis)

    def smooth(self, stamp_ns: int, share: float, smoothing_s: float) -> None:
        """The running mean of the shares over the first ``smoothing_s``, an EMA from there on: an
        EMA seeded by its first frame alone would carry that frame's share for a whole time constant
        (a drive that starts slowly in fog read 0.45, then 0.2-0.3, and warned). After a pause in
        judging longer than ``smoothing_s`` (a stop: no events) it starts again the same way."""
        if self.start_ns is None or stamp_ns - self.last_ns > smoothing_s * NS:
            self.start_ns, self.count, self.value = stamp_ns, 0, 0.0
        self.count += 1
        if stamp_ns - self.start_ns < smoothing_s * NS:
            self.value += (share - self.value) / self.count
        else:
            self.value = ema(self.value, share, (stamp_ns - self.last_ns) / NS, smoothing_s)
        self.last_ns = stamp_ns

    def restart(self) -> None:
        """A jump back in time: smoothing starts again, the verdict holds."""
        self.value, self.last_ns, self.start_ns = math.nan, None, None
        self.hysteresis.restart()


class MotionAgreementMonitor:
    """A verdict on the camera from its frames' motion against the event camera's."""

    def __init__(self, settings: MotionAgreementSettings) -> None:
        self.settings = settings
        self._track = _Track()
        self._history: deque[tuple[int, np.ndarray]] = deque()  # (stamp, camera block means), oldest first
        self.last: MotionStats | None = None

    @property
    def excluded(self) -> frozenset[Modality]:
        s = self.settings
        return frozenset({Modality.CAMERA}) if s.enabled and s.exclude and self._track.hysteresis.excluded else frozenset()

    def update(self, stamp_ns: int, camera: np.ndarray | None, events: np.ndarray | None) -> dict[Modality, MotionVerdict]:
        """One segmented frame's encodings (None: not in the bundle; the verdict then holds)."""
        s = self.settings
        if not s.enabled or camera is None:
            return self.verdicts()
        track = self._track
        if self._history and stamp_ns < self._history[-1][0]:  # a jump back (bag loop): start again
            self._history.clear()
            track.restart()
        now = block_means(camera, block_side(camera.shape[1], s))
        before = self._before(stamp_ns - int(s.lag_s * NS))
        self._history.append((stamp_ns, now))
        if events is None or before is None or before.shape != now.shape:
            return self.verdicts()
        stats = compare_motion(now, before, events, s)
        self.last = stats
        if stats.moving_blocks < s.min_moving_blocks:
            return self.verdicts()
        track.smooth(stamp_ns, stats.still_share, s.smoothing_s)
        track.hysteresis.step(stamp_ns, warn=track.value > s.max_still_share, exclude=track.value > s.exclude_still_share,
                              recovered=track.value <= 0.5 * s.max_still_share, enter_ns=int(s.enter_s * NS),
                              recover_ns=int(s.recover_s * NS))  # fmt: skip
        return self.verdicts()

    def _before(self, at_ns: int) -> np.ndarray | None:
        """The newest camera block means stamped at or before ``at_ns`` (None: none that old yet);
        the ones before it are no longer needed."""
        while len(self._history) > 1 and self._history[1][0] <= at_ns:
            self._history.popleft()
        return self._history[0][1] if self._history and self._history[0][0] <= at_ns else None

    def verdicts(self) -> dict[Modality, MotionVerdict]:
        return {Modality.CAMERA: self.verdict()}

    def verdict(self) -> MotionVerdict:
        track, s = self._track, self.settings
        level, excluded = track.hysteresis.level, Modality.CAMERA in self.excluded
        reason = ""
        if level is not HealthLevel.OK:
            reason = (f"camera image stands still where the event camera sees motion: {track.value:.0%} of the moving "
                      f"blocks, beyond {s.max_still_share:.0%} (lens covered?)")  # fmt: skip
            if excluded:
                reason += "; excluded from fusion"
        return MotionVerdict(Modality.CAMERA, track.value, s.max_still_share, level, excluded, reason)
