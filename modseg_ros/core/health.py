"""Sensor health monitor: decides, per modality, whether a stream is fit to be fused.

Pure and clock-injected: every input carries the node-clock time ``now_ns`` (ROS time, so sim time
works) and nothing here reads a clock. Two kinds of evidence (docs/design.md#sensor-health):

- **Stream checks**, on ``tick(now)``: never received (STALE), no valid message for longer than the
  timeout (ERROR), message rate over a sliding window below the warn / error rates or above the
  maximum (WARN: a second publisher on the topic, a burst). Rates count the messages' stamps, not
  their arrivals: a node that is held up takes its queued messages in a burst, which says nothing
  about the sensor.
- **The node's own lateness**: ``tick`` is told how late it runs after its schedule. A node starved
  of CPU (or held up by a long callback) receives late and, past its queue depth, loses messages; so
  while it is late, timeouts allow for the delay and rates are not judged, and ``node_late`` says
  so (the node reports it as its own problem, not a sensor's).
- **Message checks**, on each ``observe`` (or ``reject`` for a malformed message): zero, future,
  stale and non-monotonic stamps; a frozen payload (the same hash of sampled bytes several times in
  a row); and content: camera exposure and blockage from block statistics, depth valid-pixel fraction,
  LiDAR point count / no-return ratio / blocked azimuth sector, event activity too low or saturated.

Message checks go through hysteresis: a level is entered after ``fail_count`` consecutive messages
at or above it and left after ``recover_count`` consecutive messages below it. A timeout fails the
stream at once and recovery from it also needs ``recover_count`` good messages. ``alive`` is
level < ERROR after the first message; it drives the synchronizer and the model.

- **Cross-checks** between sensors, judged on the worker after each segmented bundle and handed
  over with ``judge``: consistency with the other sensors (core/checks/consistency.py, from the network's
  output), depth against LiDAR ranges (core/checks/range_agreement.py) and the camera against the event
  camera's motion (core/checks/motion_agreement.py). An alive sensor a check judges faulty is WARN with
  that check's reason (it stays alive: it is still encoded and checked, so it can recover).
"""
from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from modseg_ros.core.params import Parameter, ParameterReader
from modseg_ros.core.types import (
    CameraFrame,
    DepthFrame,
    EventFrame,
    EventPacket,
    HealthLevel,
    HealthState,
    Modality,
    PointCloud,
    SensorSample,
)
from modseg_ros.errors import ConfigError

OK, WARN, ERROR, STALE = HealthLevel.OK, HealthLevel.WARN, HealthLevel.ERROR, HealthLevel.STALE


@dataclass(frozen=True)
class StreamLimits:
    """Timing limits of one sensor stream."""

    rate_hz: float  # nominal rate (for reports)
    timeout_ns: int  # no valid message for longer than this: ERROR
    warn_rate_hz: float  # measured rate below this over the window: WARN
    error_rate_hz: float  # ... below this: ERROR
    frozen_count: int = 3  # this many identical payloads in a row: ERROR (0 disables)
    max_rate_hz: float = 0.0  # measured rate above this over the window: WARN (0 disables)


@dataclass(frozen=True)
class CameraChecks:
    """Exposure and blockage from block statistics of the grey image (after Autoware's image diagnostics)."""

    grid: tuple[int, int] = (4, 4)  # rows, columns of blocks
    dark_level: float = 15.0  # block mean below this: dark
    bright_level: float = 240.0  # block mean above this: bright
    uniform_std: float = 1.5  # block standard deviation below this (and neither dark nor bright): blocked
    warn_fraction: float = 0.5  # fraction of blocks dark / bright / blocked for WARN
    error_fraction: float = 0.8  # ... for ERROR


@dataclass(frozen=True)
class DepthChecks:
    warn_valid_fraction: float = 0.3  # fraction of pixels with a depth (sky has none)
    error_valid_fraction: float = 0.05


@dataclass(frozen=True)
class LidarChecks:
    min_points: int = 100  # fewer returns than this: ERROR
    warn_no_return_ratio: float = 0.6  # of the cloud's points, fraction without a return (NaN / origin)
    error_no_return_ratio: float = 0.95
    sector_bins: int = 72  # azimuth bins for the blockage check
    warn_blocked_sector_deg: float = 60.0  # widest run of azimuth without returns; 0 disables
    error_blocked_sector_deg: float = 180.0


@dataclass(frozen=True)
class EventChecks:
    warn_min_active_fraction: float = 1e-4  # fraction of pixels with at least one event
    error_max_active_fraction: float = 0.6  # saturated (noise storm, flicker)


@dataclass(frozen=True)
class HealthConfig:
    streams: Mapping[Modality, StreamLimits]
    window_ns: int = 1_000_000_000  # rate window
    fail_count: int = 2  # consecutive bad messages to enter a worse level
    recover_count: int = 3  # consecutive better messages to leave it
    max_delay_ns: int = 1_000_000_000  # stamp older than now minus this: stale stamp (0 disables)
    max_future_ns: int = 200_000_000  # stamp newer than now plus this: future stamp (0 disables)
    camera: CameraChecks = field(default_factory=CameraChecks)
    depth: DepthChecks = field(default_factory=DepthChecks)
    lidar: LidarChecks = field(default_factory=LidarChecks)
    events: EventChecks = field(default_factory=EventChecks)

    PARAMETERS = (
        Parameter("health.window_s", "rate window", "> 0 s"),
        Parameter("health.fail_count", "consecutive bad messages to fail", ">= 1"),
        Parameter("health.recover_count", "consecutive good messages to recover", ">= 1"),
        Parameter("health.max_delay_s", "stamps older than this are stale (0 disables)", ">= 0 s", read_only=False),
        Parameter("health.max_future_s", "stamps further ahead than this are in the future (0 disables)", ">= 0 s", read_only=False),
        Parameter("health.max_rate_factor", "measured rate above this times rate_hz: WARN (0 disables)", "0 or > 1", read_only=False),
        *Parameter("health.{m}.rate_hz", "the sensor's nominal rate (also predicts its next stamp)", "> 0 Hz").for_modalities(),
        *Parameter("health.{m}.timeout_s", "no message for this long: the sensor is dead", "> 0 s", read_only=False).for_modalities(),
        *Parameter("health.{m}.warn_rate_hz", "measured rate below this: WARN", ">= error_rate_hz", read_only=False).for_modalities(),
        *Parameter("health.{m}.error_rate_hz", "measured rate below this: ERROR", ">= 0 Hz", read_only=False).for_modalities(),
        *Parameter("health.{m}.frozen_count", "this many identical messages in a row: frozen (0 disables)", ">= 0", read_only=False).for_modalities(),
        Parameter("health.camera.grid", "blocks of the exposure and blockage statistics", "[rows, columns]"),
        Parameter("health.camera.dark_level", "block mean below this: dark", "0 .. 255", read_only=False),
        Parameter("health.camera.bright_level", "block mean above this: saturated", "0 .. 255", read_only=False),
        Parameter("health.camera.uniform_std", "block standard deviation below this: uniform (covered)", ">= 0", read_only=False),
        Parameter("health.camera.warn_fraction", "share of bad blocks for WARN", "0 .. 1", read_only=False),
        Parameter("health.camera.error_fraction", "share of bad blocks for ERROR", "0 .. 1", read_only=False),
        Parameter("health.depth.warn_valid_fraction", "share of pixels with a depth below this: WARN", "0 .. 1", read_only=False),
        Parameter("health.depth.error_valid_fraction", "below this: ERROR", "0 .. 1", read_only=False),
        Parameter("health.lidar.min_points", "fewer returns: ERROR", ">= 0", read_only=False),
        Parameter("health.lidar.warn_no_return_ratio", "share of points without a return above this: WARN", "0 .. 1", read_only=False),
        Parameter("health.lidar.error_no_return_ratio", "above this: ERROR", "0 .. 1", read_only=False),
        Parameter("health.lidar.warn_blocked_sector_deg", "widest sector without returns above this: WARN", "0 .. 360 deg", read_only=False),
        Parameter("health.lidar.error_blocked_sector_deg", "above this: ERROR", "0 .. 360 deg", read_only=False),
        Parameter("health.events.warn_min_active_fraction", "share of pixels with events below this: WARN", "0 .. 1", read_only=False),
        Parameter("health.events.error_max_active_fraction", "above this (a noise storm, flicker): ERROR", "0 .. 1", read_only=False),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader, modalities: tuple[Modality, ...]) -> HealthConfig:
        """``health.*`` of the stream and content checks, for the enabled ``modalities``."""
        streams = {}
        max_rate_factor = r.number("health.max_rate_factor", 0.0)
        if 0.0 < max_rate_factor <= 1.0:
            raise ConfigError(f"parameter 'health.max_rate_factor' must be 0 (off) or above 1, got {max_rate_factor:g}")
        for m in modalities:
            p = f"health.{m.value}"
            warn, error = r.number(f"{p}.warn_rate_hz", 0.0), r.number(f"{p}.error_rate_hz", 0.0)
            if error > warn:
                raise ConfigError(f"parameter '{p}.error_rate_hz' ({error:g}) must not exceed '{p}.warn_rate_hz' ({warn:g})")
            rate_hz = r.positive(f"{p}.rate_hz")
            streams[m] = StreamLimits(
                rate_hz=rate_hz,
                timeout_ns=r.seconds(f"{p}.timeout_s", allow_zero=False),
                warn_rate_hz=warn,
                error_rate_hz=error,
                frozen_count=r.integer(f"{p}.frozen_count", 0),
                max_rate_hz=max_rate_factor * rate_hz,
            )
        grid = r.value("health.camera.grid")
        if not (isinstance(grid, (list, tuple)) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
            raise ConfigError(f"parameter 'health.camera.grid' must be [rows, columns] of positive integers, got {grid!r}")

        def fraction(key: str) -> float:
            return r.number(key, 0.0, 1.0)

        return cls(
            streams=streams,
            window_ns=r.seconds("health.window_s", allow_zero=False),
            fail_count=r.integer("health.fail_count", 1),
            recover_count=r.integer("health.recover_count", 1),
            max_delay_ns=r.seconds("health.max_delay_s"),
            max_future_ns=r.seconds("health.max_future_s"),
            camera=CameraChecks(
                grid=(grid[0], grid[1]),
                dark_level=r.number("health.camera.dark_level", 0.0, 255.0),
                bright_level=r.number("health.camera.bright_level", 0.0, 255.0),
                uniform_std=r.number("health.camera.uniform_std", 0.0),
                warn_fraction=fraction("health.camera.warn_fraction"),
                error_fraction=fraction("health.camera.error_fraction"),
            ),
            depth=DepthChecks(
                warn_valid_fraction=fraction("health.depth.warn_valid_fraction"),
                error_valid_fraction=fraction("health.depth.error_valid_fraction"),
            ),
            lidar=LidarChecks(
                min_points=r.integer("health.lidar.min_points", 0),
                warn_no_return_ratio=fraction("health.lidar.warn_no_return_ratio"),
                error_no_return_ratio=fraction("health.lidar.error_no_return_ratio"),
                warn_blocked_sector_deg=r.number("health.lidar.warn_blocked_sector_deg", 0.0, 360.0),
                error_blocked_sector_deg=r.number("health.lidar.error_blocked_sector_deg", 0.0, 360.0),
            ),
            events=EventChecks(
                warn_min_active_fraction=fraction("health.events.warn_min_active_fraction"),
                error_max_active_fraction=fraction("health.events.error_max_active_fraction"),
            ),
        )


@dataclass(frozen=True)
class Finding:
    level: HealthLevel
    reason: str


_FINE = Finding(OK, "")


def _worst(findings: Iterable[Finding]) -> Finding:
    worst = _FINE
    for f in findings:
        if f.level > worst.level:
            worst = f
    return worst


def _graded(value: float, warn: float, error: float, message: str, above: bool = False) -> Finding:
    """WARN / ERROR when ``value`` is below (or above) the thresholds."""
    bad_error = value > error if above else value < error
    bad_warn = value > warn if above else value < warn
    if bad_error:
        return Finding(ERROR, message)
    if bad_warn:
        return Finding(WARN, message)
    return _FINE


# --- content checks: payload -> (finding, numbers for /diagnostics) -------------------------------


def _sample_grid(image: np.ndarray, max_side: int = 128) -> np.ndarray:
    step_y = max(1, image.shape[0] // max_side)
    step_x = max(1, image.shape[1] // max_side)
    return image[::step_y, ::step_x]


def check_camera(image: np.ndarray, checks: CameraChecks) -> tuple[Finding, dict[str, float]]:
    if image.size == 0:  # (conversion refuses empty images; a driver calling the core directly may not)
        return Finding(ERROR, "empty image"), {}
    grey = _sample_grid(image).astype(np.float32).mean(axis=2)
    rows, cols = checks.grid
    h, w = grey.shape[0] // rows * rows, grey.shape[1] // cols * cols
    if h == 0 or w == 0:
        return Finding(ERROR, f"image too small for {rows}×{cols} exposure blocks"), {}
    blocks = grey[:h, :w].reshape(rows, h // rows, cols, w // cols).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    mean, std = blocks.mean(axis=1), blocks.std(axis=1)
    dark = mean < checks.dark_level
    bright = mean > checks.bright_level
    uniform = (std < checks.uniform_std) & ~dark & ~bright
    fractions = {"dark_blocks": float(dark.mean()), "bright_blocks": float(bright.mean()),
                 "blocked_blocks": float(uniform.mean()), "mean_intensity": float(grey.mean())}  # fmt: skip
    finding = _worst([
        _graded(fractions["dark_blocks"], checks.warn_fraction, checks.error_fraction,
                f"under-exposed: {fractions['dark_blocks']:.0%} of blocks dark", above=True),
        _graded(fractions["bright_blocks"], checks.warn_fraction, checks.error_fraction,
                f"over-exposed: {fractions['bright_blocks']:.0%} of blocks saturated", above=True),
        _graded(fractions["blocked_blocks"], checks.warn_fraction, checks.error_fraction,
                f"blocked: {fractions['blocked_blocks']:.0%} of blocks without texture", above=True),
    ])  # fmt: skip
    return finding, fractions


def check_depth(depth_m: np.ndarray, checks: DepthChecks) -> tuple[Finding, dict[str, float]]:
    if depth_m.size == 0:
        return Finding(ERROR, "empty depth image"), {}
    sample = _sample_grid(depth_m[..., None])[..., 0]
    valid = float((np.isfinite(sample) & (sample > 0)).mean())  # (the driver's no-depth markers: core/types.py)
    finding = _graded(valid, checks.warn_valid_fraction, checks.error_valid_fraction,
                      f"only {valid:.0%} of pixels have a depth")  # fmt: skip
    return finding, {"valid_fraction": valid}


def _widest_empty_run(occupied: np.ndarray) -> int:
    """Longest circular run of False in a boolean ring."""
    if occupied.all():
        return 0
    if not occupied.any():
        return len(occupied)
    start = int(np.argmax(occupied))  # rotate so the ring starts at an occupied bin
    ring = np.roll(occupied, -start)
    edges = np.flatnonzero(np.diff(np.concatenate(([1], ring.astype(np.int8), [1]))))
    return int((edges[1::2] - edges[0::2]).max()) if len(edges) else 0


# The blocked-sector check bins the azimuths of at most this many returns, drawn at random (seeded
# by their count: reproducible, and no stride that could alias with the beam order). arctan2 over
# every return of a 128×2048 scan cost more than all the other checks; a 5° bin of a real scan holds
# thousands of returns, so a bin reads empty only when it holds well under 1/16 384 of them.
SECTOR_SAMPLE = 16384


@np.errstate(over="ignore", invalid="ignore")  # garbage coordinates (a corrupt driver: signalling NaNs, absurd values) are not warnings
def check_lidar(cloud: PointCloud, checks: LidarChecks) -> tuple[Finding, dict[str, float]]:
    points = cloud.points
    total = len(points)
    # |x| + |y| + |z| in float64 (finite float32 coordinates cannot overflow it): NaN or inf for a
    # non-finite point, at most 1e-6 for the origin (drivers also mark no-return so); absurd finite
    # coordinates (a corrupt driver) count as returns
    size = np.abs(points[:, 0], dtype=np.float64)
    size += np.abs(points[:, 1])
    size += np.abs(points[:, 2])
    returned = (size > 1e-6) & (size < np.inf)
    count = int(np.count_nonzero(returned))
    no_return = 1.0 - count / total if total else 1.0
    numbers = {"points": float(count), "no_return_ratio": no_return}
    findings = [Finding(ERROR, f"only {count} returns (minimum {checks.min_points})") if count < checks.min_points else _FINE]
    findings.append(_graded(no_return, checks.warn_no_return_ratio, checks.error_no_return_ratio,
                            f"{no_return:.0%} of beams without a return", above=True))  # fmt: skip
    if checks.warn_blocked_sector_deg > 0 and count >= checks.min_points:
        returns = np.flatnonzero(returned)
        if count > SECTOR_SAMPLE:
            returns = returns[np.sort(np.random.default_rng(count).integers(0, count, SECTOR_SAMPLE))]
        hit = points[returns]
        azimuth = np.arctan2(hit[:, 1], hit[:, 0])
        bins = ((azimuth + np.pi) / (2 * np.pi) * checks.sector_bins).astype(np.int64) % checks.sector_bins
        occupied = np.bincount(bins, minlength=checks.sector_bins) > 0
        sector = _widest_empty_run(occupied) * 360.0 / checks.sector_bins
        numbers["blocked_sector_deg"] = sector
        findings.append(_graded(sector, checks.warn_blocked_sector_deg, checks.error_blocked_sector_deg,
                                f"no returns over a {sector:.0f}° sector", above=True))  # fmt: skip
    return _worst(findings), numbers


def check_events(data: EventPacket | EventFrame, checks: EventChecks) -> tuple[Finding, dict[str, float]]:
    if isinstance(data, EventPacket):
        pixels = max(1, data.width * data.height)
        x, y = data.x, data.y
        if len(x) and (int(x.max()) >= data.width or int(y.max()) >= data.height):
            inside = (x < data.width) & (y < data.height)
            x, y = x[inside], y[inside]
        lin = np.multiply(y, data.width, dtype=np.intp)  # (an index of the scatter's own type: no conversion inside it)
        lin += x
        hit = np.zeros(pixels, dtype=bool)  # a pixel map, not counts: a quarter of a bincount's memory traffic
        hit[lin] = True
        active = np.count_nonzero(hit) / pixels
        numbers = {"events": float(len(data.x)), "active_fraction": active}
    else:
        active = float(_sample_grid(data.image).any(axis=2).mean()) if data.image.size else 0.0
        numbers = {"active_fraction": active}
    if active == 0.0:
        return Finding(ERROR, "no events"), numbers
    finding = _worst([
        _graded(active, checks.warn_min_active_fraction, -1.0, f"few events: {active:.2%} of pixels active"),
        _graded(active, 2.0, checks.error_max_active_fraction, f"saturated: {active:.0%} of pixels active", above=True),
    ])  # fmt: skip
    return finding, numbers


def check_content(sample: SensorSample, config: HealthConfig) -> tuple[Finding, dict[str, float]]:
    data = sample.data
    if isinstance(data, CameraFrame):
        return check_camera(data.image, config.camera)
    if isinstance(data, DepthFrame):
        return check_depth(data.depth_m, config.depth)
    if isinstance(data, PointCloud):
        return check_lidar(data, config.lidar)
    if isinstance(data, (EventPacket, EventFrame)):
        return check_events(data, config.events)
    raise TypeError(f"no content check for {type(data).__name__}")


def payload_digest(data) -> bytes:
    """Hash of a fixed sample of the payload's values: equal for byte-identical payloads."""
    h = hashlib.blake2b(digest_size=8)
    if isinstance(data, CameraFrame):
        arrays = [_sample_grid(data.image, 64)]
    elif isinstance(data, DepthFrame):
        arrays = [_sample_grid(data.depth_m[..., None], 64)]
    elif isinstance(data, EventFrame):
        arrays = [_sample_grid(data.image, 64)]
    elif isinstance(data, PointCloud):
        step = max(1, len(data.points) // 4096)
        arrays = [data.points[::step], data.intensity[::step]]
    elif isinstance(data, EventPacket):
        step = max(1, len(data.x) // 4096)
        arrays = [data.x[::step], data.y[::step], data.t_ns[::step]]
    else:
        raise TypeError(f"no digest for {type(data).__name__}")
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.digest()


# --- hysteresis and per-stream state -------------------------------------------------------------


class _Hysteresis:
    """Level entered after ``fail`` consecutive findings at or above it, left after ``recover`` below."""

    def __init__(self, fail: int, recover: int):
        self.fail, self.recover = fail, recover
        self.level, self.reason = OK, ""
        self._history: deque[Finding] = deque(maxlen=max(fail, recover))

    def update(self, finding: Finding) -> None:
        self._history.append(finding)
        recent = list(self._history)
        if len(recent) >= self.fail:
            reached = min(f.level for f in recent[-self.fail:])
            if reached > self.level:
                self.level = reached
        if len(recent) >= self.recover and self.level > OK:
            tail = recent[-self.recover:]
            if max(f.level for f in tail) < self.level:
                self.level = max(f.level for f in tail)
        if self.level == OK:
            self.reason = ""
        elif finding.level == self.level:
            self.reason = finding.reason  # the newest explanation of the current level

    def force(self, level: HealthLevel, reason: str) -> None:
        self.level, self.reason = level, reason
        self._history.clear()


class CrossCheckVerdict(Protocol):
    """What a cross-check (core/checks/consistency.py, range_agreement.py, motion_agreement.py) says of one sensor."""

    level: HealthLevel
    reason: str

    def details(self) -> dict[str, float | int | str]: ...


@dataclass
class _Stream:
    limits: StreamLimits
    hysteresis: _Hysteresis
    received: int = 0
    rejected: int = 0
    last_arrival_ns: int | None = None
    last_stamp_ns: int | None = None  # newest stamp consistent with the node clock (not zero, future or stale)
    stamp_usable: bool = True  # was the newest message's stamp fit for time matching?
    window_start_ns: int | None = None  # since when the stream has been continuously present
    stamps: deque[int] = field(default_factory=deque)  # usable stamps within the rate window of the newest
    timed_out: bool = False
    last_digest: bytes = b""
    identical_run: int = 0
    last_problem: str = ""
    numbers: dict[str, float] = field(default_factory=dict)
    cross_checks: Mapping[str, CrossCheckVerdict] = field(default_factory=dict)  # by check; replaced whole by the worker, read here


class HealthMonitor:
    """Health of each configured modality (see the module docstring)."""

    def __init__(self, config: HealthConfig, modalities: Iterable[Modality]):
        self.config = config
        self._streams = {
            m: _Stream(config.streams[m], _Hysteresis(config.fail_count, config.recover_count)) for m in modalities
        }
        self._states: dict[Modality, HealthState] = {}
        self._late_until_ns: int | None = None  # rates are not judged before this (the node was late)
        self.node_late = False
        self.late_episodes = 0
        self.worst_late_ns = 0  # the latest tick of the current (or last) episode
        self.tick(0)

    def reconfigure(self, config: HealthConfig) -> None:
        """New thresholds at run time (the parameters that are not read-only; the streams' state is kept)."""
        for modality, stream in self._streams.items():
            stream.limits = config.streams[modality]
        self.config = config

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(self._streams)

    @property
    def states(self) -> dict[Modality, HealthState]:
        return dict(self._states)

    @property
    def alive(self) -> frozenset[Modality]:
        return frozenset(m for m, s in self._states.items() if s.alive)

    def observe(self, sample: SensorSample, now_ns: int) -> HealthState:
        """A converted message arrived: run the message checks and update the stream."""
        stream = self._streams[sample.modality]
        stamp_finding, on_clock = self._check_stamp(stream, sample.stamp_ns, now_ns)
        content, numbers = check_content(sample, self.config)
        digest = payload_digest(sample.data)
        stream.identical_run = stream.identical_run + 1 if digest == stream.last_digest else 0
        stream.last_digest = digest
        frozen = _FINE
        if stream.limits.frozen_count and stream.identical_run + 1 >= stream.limits.frozen_count:
            frozen = Finding(ERROR, f"frozen: {stream.identical_run + 1} identical payloads in a row")
        gap = stream.last_arrival_ns is not None and now_ns - stream.last_arrival_ns > stream.limits.timeout_ns
        if stream.timed_out or stream.window_start_ns is None or gap:  # (a gap no tick judged: a stall, a clock jump)
            stream.window_start_ns = now_ns
            stream.stamps.clear()
            stream.timed_out = False
        stream.received += 1
        stream.last_arrival_ns = now_ns
        stream.stamp_usable = stamp_finding.level is OK
        if on_clock:  # a glitch (zero, far future or past) does not move the reference for the next stamp
            stream.last_stamp_ns = sample.stamp_ns
        if stream.stamp_usable:
            stream.stamps.append(sample.stamp_ns)
            while stream.stamps[0] <= sample.stamp_ns - self.config.window_ns:
                stream.stamps.popleft()
        stream.numbers = numbers
        stream.hysteresis.update(_worst([stamp_finding, content, frozen]))  # content names the fault best
        return self._update(sample.modality, now_ns)

    def stamp_usable(self, modality: Modality) -> bool:
        """Was the stamp of this modality's newest message fit for time matching (not zero, in the
        future, stale, or behind the previous one)? Such messages are judged, not synchronised."""
        return self._streams[modality].stamp_usable

    def clock_jumped_back(self, now_ns: int) -> None:
        """The node clock went back (a bag loop on sim time): rates, timeouts and stamp order start
        again from ``now_ns``; levels and their hysteresis are kept."""
        self._late_until_ns = None
        for stream in self._streams.values():
            stream.stamps.clear()
            stream.last_stamp_ns = None
            if stream.received:
                stream.window_start_ns = stream.last_arrival_ns = now_ns

    def reject(self, modality: Modality, now_ns: int, problem: str) -> HealthState:
        """A message of this modality could not be used (malformed): it counts as a bad message."""
        stream = self._streams[modality]
        stream.rejected += 1
        stream.last_problem = problem
        stream.hysteresis.update(Finding(ERROR, f"malformed message: {problem}"))
        return self._update(modality, now_ns)

    def judge(self, check: str, verdicts: Mapping[Modality, CrossCheckVerdict]) -> None:
        """A cross-check's newest verdicts (any thread): they count from the next ``observe`` or ``tick``."""
        for modality, verdict in verdicts.items():
            if modality in self._streams:
                stream = self._streams[modality]
                stream.cross_checks = {**stream.cross_checks, check: verdict}

    def tick(self, now_ns: int, late_ns: int = 0) -> dict[Modality, HealthState]:
        """Re-evaluate the stream checks (timeouts, rates) at ``now_ns``; call it periodically.
        ``late_ns``: how far behind its schedule this tick runs. Messages held up with it may be
        waiting in the queue, so a timeout needs that much longer; beyond half the shortest
        timeout the node is late, and rates are not judged until a whole window passes without it."""
        if late_ns > min((s.limits.timeout_ns for s in self._streams.values()), default=0) // 2:
            if not self.node_late:
                self.late_episodes += 1
                self.worst_late_ns = 0
            self.worst_late_ns = max(self.worst_late_ns, late_ns)
            self._late_until_ns = now_ns + self.config.window_ns
        self.node_late = self._late_until_ns is not None and now_ns < self._late_until_ns
        for modality in self._streams:
            self._update(modality, now_ns, late_ns)
        return self.states

    # --- internals ---------------------------------------------------------------------------

    def _check_stamp(self, stream: _Stream, stamp_ns: int, now_ns: int) -> tuple[Finding, bool]:
        """The stamp's finding, and whether it is consistent with the node clock at all."""
        cfg = self.config
        if stamp_ns <= 0:
            return Finding(ERROR, "zero stamp"), False
        if cfg.max_future_ns and stamp_ns > now_ns + cfg.max_future_ns:
            return Finding(ERROR, f"stamp {(stamp_ns - now_ns) / 1e9:.2f} s in the future"), False
        if cfg.max_delay_ns and stamp_ns < now_ns - cfg.max_delay_ns:
            return Finding(ERROR, f"stale stamp, {(now_ns - stamp_ns) / 1e9:.2f} s old"), False
        if stream.last_stamp_ns is not None and stamp_ns <= stream.last_stamp_ns:
            return Finding(ERROR, f"stamp not increasing ({(stamp_ns - stream.last_stamp_ns) / 1e9:+.3f} s)"), True
        return _FINE, True

    def _timeout(self, stream: _Stream, now_ns: int, late_ns: int) -> Finding:
        age = now_ns - stream.last_arrival_ns
        if age <= stream.limits.timeout_ns + late_ns:
            return _FINE
        note = f"; last rejected: {stream.last_problem}" if stream.rejected and stream.last_problem else ""
        return Finding(ERROR, f"no valid message for {age / 1e9:.2f} s (timeout {stream.limits.timeout_ns / 1e9:.2f} s){note}")

    def _rate_finding(self, stream: _Stream, now_ns: int) -> Finding:
        window = self.config.window_ns
        if now_ns - stream.window_start_ns < window or self.node_late:
            return _FINE  # not observed for a whole window yet (start, resumed after a timeout), or the node lost its messages
        limits = stream.limits
        rate = len(stream.stamps) / (window / 1e9)
        if limits.max_rate_hz and rate > limits.max_rate_hz:  # a second publisher on the topic, a burst, a flood
            return Finding(WARN, f"rate {rate:.1f} Hz above {limits.max_rate_hz:.1f} Hz")
        bound = limits.error_rate_hz if rate < limits.error_rate_hz else limits.warn_rate_hz
        return _graded(rate, limits.warn_rate_hz, limits.error_rate_hz, f"rate {rate:.1f} Hz below {bound:.1f} Hz")

    def _rate(self, stream: _Stream, now_ns: int) -> float:
        if stream.window_start_ns is None or stream.timed_out:
            return 0.0
        span = min(self.config.window_ns, now_ns - stream.window_start_ns)
        return len(stream.stamps) / (span / 1e9) if span > 0 else 0.0

    def _update(self, modality: Modality, now_ns: int, late_ns: int = 0) -> HealthState:
        stream = self._streams[modality]
        if stream.received == 0:
            reason = "never received" + (f"; {stream.rejected} rejected: {stream.last_problem}" if stream.rejected else "")
            level, alive = STALE, False
        else:
            timeout = self._timeout(stream, now_ns, late_ns)
            if timeout.level is ERROR:
                if not stream.timed_out:
                    stream.timed_out = True
                    stream.hysteresis.force(ERROR, "recovering after a timeout")
                level, reason = ERROR, timeout.reason
            else:
                level, reason = stream.hysteresis.level, stream.hysteresis.reason
                rate = self._rate_finding(stream, now_ns)
                if rate.level > level:
                    level, reason = rate.level, rate.reason
                for verdict in stream.cross_checks.values():
                    if verdict.level > level:
                        level, reason = verdict.level, verdict.reason
            alive = level < ERROR
        age = (now_ns - stream.last_arrival_ns) / 1e9 if stream.last_arrival_ns is not None else -1.0
        details = {"received": stream.received, "rejected": stream.rejected, **stream.numbers}
        for verdict in stream.cross_checks.values():
            details.update(verdict.details())
        state = HealthState(modality, HealthLevel(level), reason, alive, self._rate(stream, now_ns), age, details)
        self._states[modality] = state
        return state
