"""The depth-LiDAR range check (core/checks/range_agreement.py): its statistics, blame and hysteresis, and
each geometric fault of the failure spec on world frames of the shipped rig (512×256): detected and
blamed on the right sensor, nothing on the nominal frames."""
from __future__ import annotations

import numpy as np
import pytest

from modseg_ros.core.checks.range_agreement import RangeAgreementMonitor, RangeAgreementSettings, compare_ranges
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import EncodingConfig, encode_payload, range_code
from modseg_ros.core.types import HealthLevel, Modality
from modseg_ros.data.failures import apply_to_payload, parse_failure_spec
from modseg_ros.data.world.conditions import make_condition
from modseg_ros.data.world.simulator import Simulator
from modseg_ros.data.world.town import TownParams, generate_town
from modseg_ros.paths import config_file

D, L = Modality.DEPTH, Modality.LIDAR
OK, WARN = HealthLevel.OK, HealthLevel.WARN
CODES = EncodingConfig()
PERIOD_NS = 100_000_000  # 10 Hz bundles


def encoding_of(z: np.ndarray) -> np.ndarray:
    out = np.zeros((*z.shape, 3), dtype=np.uint8)
    out[..., 0] = range_code(z, CODES)
    return out


def ramp(height=32, width=64) -> np.ndarray:
    """A scene of ranges 10..12 m, with a step (an object edge) every 8 columns."""
    z = np.linspace(10.0, 12.0, height)[:, None] * np.ones(width)
    z[:, (np.arange(width) // 8) % 2 == 1] *= 1.6
    return z.astype(np.float32)


def shifted(encoding: np.ndarray, columns: int) -> np.ndarray:
    """The encoding moved right by ``columns`` (no range where it came from)."""
    out = np.zeros_like(encoding)
    out[:, columns:] = encoding[:, :-columns]
    return out


def test_equal_ranges_agree_a_scale_shifts_the_median_a_misregistration_fits_better_moved_back():
    z = ramp()
    same = compare_ranges(encoding_of(z), encoding_of(z), tolerance_codes=4)
    assert (same.pixels, same.shift_codes, same.off_surface, same.misregistration) == (z.size, 0, 0, 0)
    scaled = compare_ranges(encoding_of(1.25 * z), encoding_of(z), tolerance_codes=4)
    assert scaled.shift_codes == pytest.approx(-254 * np.log(1.25) / np.log(CODES.far_m / CODES.near_m), abs=1)
    assert scaled.off_surface < 0.05 and scaled.misregistration < 0.05
    parallax = compare_ranges(encoding_of(z), shifted(encoding_of(z), 1), tolerance_codes=4)
    assert parallax.off_surface > 0.1 and parallax.misregistration < 0.25  # off at the edges, no better elsewhere
    moved = compare_ranges(encoding_of(z), shifted(encoding_of(z), 4), tolerance_codes=4)
    assert moved.off_surface > 0.4 and moved.misregistration > 0.9 and moved.best_offset_px == (0, -4)
    lidar = encoding_of(z)
    lidar[:, ::2] = 0  # sparse LiDAR: only pixels holding both ranges count
    assert compare_ranges(encoding_of(z), lidar, tolerance_codes=4).pixels == z.size // 2
    assert compare_ranges(encoding_of(z), np.zeros_like(lidar), tolerance_codes=4).pixels == 0


def feed(monitor, frames, start_ns=0):
    verdicts = None
    for k, (depth, lidar) in enumerate(frames):
        verdicts = monitor.update(start_ns + k * PERIOD_NS, depth, lidar)
    return verdicts


def test_one_bad_frame_moves_nothing_a_persistent_shift_warns_then_excludes_and_recovery_takes_time():
    z = ramp()
    monitor = RangeAgreementMonitor(RangeAgreementSettings(exclude=True), CODES)
    good, scaled = (encoding_of(z), encoding_of(z)), (encoding_of(1.25 * z), encoding_of(z))
    assert feed(monitor, [good] * 5 + [scaled] + [good] * 5)[D].level is OK
    verdicts = feed(monitor, [scaled] * 4, start_ns=2 * 10**9)
    assert verdicts[D].level is OK  # 0.3 s beyond the limit: not yet
    verdicts = feed(monitor, [scaled] * 12, start_ns=3 * 10**9)
    assert verdicts[D].level is WARN and verdicts[D].excluded and monitor.excluded == {D}
    assert "×1.2" in verdicts[D].reason and "excluded from fusion" in verdicts[D].reason
    assert verdicts[L].level is OK  # the spread a shift makes is not the LiDAR's
    assert feed(monitor, [(encoding_of(1.25 * z), None)] * 5, start_ns=5 * 10**9)[D].level is WARN  # no LiDAR: held
    assert feed(monitor, [good] * 5, start_ns=6 * 10**9)[D].level is WARN  # recovering: 0.5 s of 1.0 s
    assert feed(monitor, [good] * 10, start_ns=7 * 10**9)[D].level is OK and monitor.excluded == set()


def test_exclusion_needs_the_switch_and_a_disabled_check_judges_nothing():
    z = ramp()
    scaled = [(encoding_of(1.25 * z), encoding_of(z))] * 20
    monitor = RangeAgreementMonitor(RangeAgreementSettings(exclude=False), CODES)
    verdicts = feed(monitor, scaled)
    assert verdicts[D].level is WARN and not verdicts[D].excluded and monitor.excluded == set()
    off = RangeAgreementMonitor(RangeAgreementSettings(enabled=False), CODES)
    assert feed(off, scaled)[D].level is OK and off.last is None


@pytest.fixture(scope="module")
def drive():
    """Depth and LiDAR payloads of 1.5 s of a sun drive at the shipped rig (10 Hz), and the config."""
    config = NodeConfig.load(config_file("any2seg.yaml"))
    seed = 31
    town = generate_town(seed, TownParams(duration_s=2.0))
    sim = Simulator(town, make_condition("sun", np.random.default_rng(seed + 1)), config.rig, seed=seed, threads=1)
    payloads = [(sim.depth(t), sim.lidar_cloud(sim.lidar(t))) for t in np.arange(0.2, 1.7, 0.1)]
    sim.close()
    return config, payloads


@pytest.mark.parametrize("spec, blamed", [
    ("", None),
    ("depth:scale(factor=1.25)", D),
    ("depth:scale(factor=0.8)", D),
    ("depth:offset(m=1)", D),
    ("lidar:rotation(yaw=3)", L),
    ("lidar:translation(y=0.5)", L),
])  # fmt: skip
def test_a_geometric_fault_is_blamed_on_its_sensor_within_a_second(drive, spec, blamed):
    config, payloads = drive
    failures = parse_failure_spec(spec)
    rng = np.random.default_rng(0)
    monitor = RangeAgreementMonitor(config.range_agreement, config.encoding)
    frames = []
    for depth, cloud in payloads:
        for failure in failures:
            depth = apply_to_payload(failure, depth, rng)
            cloud = apply_to_payload(failure, cloud, rng)
        frames.append((encode_payload(D, depth, config.rig, config.encoding), encode_payload(L, cloud, config.rig, config.encoding)))
    warned_at = {}
    for k, frame in enumerate(frames):
        for modality, verdict in monitor.update(k * PERIOD_NS, *frame).items():
            if verdict.level is WARN:
                warned_at.setdefault(modality, k * PERIOD_NS / 1e9)
    if blamed is None:
        assert warned_at == {}, (warned_at, monitor.last)
    else:
        assert set(warned_at) == {blamed} and warned_at[blamed] <= 1.0, (warned_at, monitor.last)
