"""The ego vehicle's path and the sensors' clocks.

World time ``t`` is float seconds from the start of a sequence. Each sensor samples the world on
its own clock (rate, phase), stamps its messages with its own clock (a constant offset from world
time plus jitter) and delivers them after a latency; scheduled timestamp faults act on the stamps
(data/failures.py). Everything is drawn from seeded generators, so a run repeats exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from modseg_ros.core.geometry import Transform, rotation_from_rpy
from modseg_ros.core.types import Modality

NS = 1_000_000_000


@dataclass(frozen=True)
class EgoPath:
    """Driving along the town's main street (+x) in one lane, with a gentle steering sway."""

    x0: float
    lane_y: float
    speed: float  # m/s
    sway_m: float = 0.15  # lateral amplitude
    sway_period_s: float = 7.0
    sway_phase: float = 0.0

    def position(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t, dtype=np.float64)
        x = self.x0 + self.speed * t
        y = self.lane_y + self._sway() * np.sin(2.0 * np.pi * t / self.sway_period_s + self.sway_phase)
        return x, y

    def _sway(self) -> float:
        return self.sway_m * min(self.speed / 5.0, 1.0)  # a car standing still does not steer

    def pose(self, t: float) -> Transform:
        """T_map_from_base_link at time t (heading follows the sway, small pitch from the road)."""
        x, y = self.position(t)
        dy = self._sway() * 2.0 * np.pi / self.sway_period_s * np.cos(2.0 * np.pi * t / self.sway_period_s + self.sway_phase)
        yaw = float(np.arctan2(dy, max(self.speed, 1e-3))) if self.speed > 0.05 else 0.0
        pitch = 0.004 * min(self.speed / 5.0, 1.0) * np.sin(2.0 * np.pi * t / 1.3 + self.sway_phase)  # suspension
        return Transform.from_rotation_translation(rotation_from_rpy(0.0, pitch, yaw), [float(x), float(y), 0.0])


@dataclass(frozen=True)
class SensorClock:
    """When a sensor samples the world and how it stamps and delivers the result."""

    rate_hz: float
    phase_s: float = 0.0  # first sample at this world time
    offset_s: float = 0.0  # sensor clock minus world clock (unsynchronised clocks)
    jitter_s: float = 0.0  # std of the stamp noise
    latency_s: float = 0.0  # world time from sampling to the message reaching the bag

    def sample_times(self, duration_s: float) -> np.ndarray:
        """World times of the samples in [phase, duration)."""
        n = int(np.floor((duration_s - self.phase_s) * self.rate_hz - 1e-9)) + 1
        return self.phase_s + np.arange(max(n, 0)) / self.rate_hz

    def stamps_ns(self, times_s: np.ndarray, start_ns: int, rng: np.random.Generator) -> np.ndarray:
        noise = rng.normal(0.0, self.jitter_s, size=len(times_s)) if self.jitter_s > 0 else np.zeros(len(times_s))
        return start_ns + np.rint((times_s + self.offset_s + noise) * NS).astype(np.int64)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# Car-typical rates; depth and event cameras are triggered with the camera, the LiDAR spins on
# its own phase. Offsets are those of PTP-synchronised clocks (well below a millisecond).
DEFAULT_CLOCKS: dict[Modality, SensorClock] = {
    Modality.CAMERA: SensorClock(20.0, 0.0, 0.0, 50e-6, 0.012),
    Modality.DEPTH: SensorClock(20.0, 0.0, 300e-6, 50e-6, 0.015),
    Modality.LIDAR: SensorClock(10.0, 0.023, -400e-6, 20e-6, 0.020),
    Modality.EVENTS: SensorClock(20.0, 0.0, 150e-6, 10e-6, 0.004),
}
