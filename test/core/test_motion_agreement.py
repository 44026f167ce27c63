"""The camera-against-events motion check (core/checks/motion_agreement.py): its statistic on constructed
frames, hysteresis, exclusion switch and bag loops, and the camera occlusion of the failure spec on
world frames of the shipped rig (512×256), by day and at night: caught within 2 s, nothing on the
nominal frames, and flickering events not blamed on the camera."""
from __future__ import annotations

import numpy as np
import pytest

from modseg_ros.core.checks.motion_agreement import (
    MotionAgreementMonitor,
    MotionAgreementSettings,
    block_means,
    block_side,
    compare_motion,
)
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import encode_payload
from modseg_ros.core.types import HealthLevel, Modality
from modseg_ros.data.failures import apply_to_payload, parse_failure_spec
from modseg_ros.data.world.conditions import make_condition
from modseg_ros.data.world.simulator import Simulator
from modseg_ros.data.world.town import TownParams, generate_town
from modseg_ros.paths import config_file

C, E = Modality.CAMERA, Modality.EVENTS
OK, WARN = HealthLevel.OK, HealthLevel.WARN
PERIOD_NS = 50_000_000  # 20 Hz bundles
SETTINGS = MotionAgreementSettings()


def scene(k: int, height=64, width=128) -> np.ndarray:
    """Frame k of a textured scene sliding right by 3 px a frame (a camera image on the grid)."""
    columns = (np.arange(width) - 3 * k) % 48
    row = (40 + 4 * columns).astype(np.uint8)
    return np.repeat(np.broadcast_to(row, (height, width))[..., None], 3, axis=2).copy()


def events(height=64, width=128) -> np.ndarray:
    """An event frame encoding with events at every fourth pixel (channel 2: an event fell there)."""
    out = np.zeros((height, width, 3), np.uint8)
    out[::2, ::2, 2] = 200
    return out


def covered(image: np.ndarray) -> np.ndarray:
    """The left half of the image under a still patch (mud on the lens)."""
    out = image.copy()
    out[:, : image.shape[1] // 2] = 60
    return out


def feed(monitor, frames, start_ns=0, with_events=True):
    verdict = None
    for k, image in enumerate(frames):
        verdict = monitor.update(start_ns + k * PERIOD_NS, image, events() if with_events else None)[C]
    return verdict


def test_the_still_share_counts_moving_blocks_the_camera_sees_still():
    side = block_side(128, SETTINGS)
    now, before = block_means(scene(10), side), block_means(scene(0), side)
    assert side == 4 and now.shape == (16, 32)
    moving = compare_motion(now, before, events(), SETTINGS)
    assert (moving.moving_blocks, moving.still_blocks) == (512, 0)
    mud = compare_motion(block_means(covered(scene(10)), side), block_means(covered(scene(0)), side), events(), SETTINGS)
    assert mud.still_share == pytest.approx(0.5)
    quiet = compare_motion(now, before, np.zeros_like(events()), SETTINGS)
    assert quiet.moving_blocks == 0 and np.isnan(quiet.still_share)  # no events: nothing to compare with


def test_a_covered_lens_warns_after_enter_s_excludes_with_the_switch_and_recovers_after_recover_s():
    monitor = MotionAgreementMonitor(MotionAgreementSettings(exclude=True))
    assert feed(monitor, [scene(k) for k in range(20)]).level is OK  # 1 s of a moving scene
    assert monitor.last is not None and monitor.last.still_share == 0.0
    verdict = feed(monitor, [covered(scene(k)) for k in range(20, 32)], start_ns=20 * PERIOD_NS)
    assert verdict.level is OK  # 0.6 s covered: the lag (0.5 s) still compares with the uncovered image
    verdict = feed(monitor, [covered(scene(k)) for k in range(32, 64)], start_ns=32 * PERIOD_NS)
    assert verdict.level is WARN and verdict.excluded and monitor.excluded == {C}
    assert verdict.reason.startswith("camera image stands still where the event camera sees motion") and "excluded" in verdict.reason
    assert feed(monitor, [covered(scene(k)) for k in range(64, 74)], start_ns=64 * PERIOD_NS, with_events=False).level is WARN  # held
    assert monitor.update(74 * PERIOD_NS, scene(74), events())[C].value == 0.0  # judged again after 0.55 s: smoothing anew
    assert feed(monitor, [scene(k) for k in range(75, 94)], start_ns=75 * PERIOD_NS).level is WARN  # recovering
    assert feed(monitor, [scene(k) for k in range(94, 124)], start_ns=94 * PERIOD_NS).level is OK and monitor.excluded == set()


def test_exclusion_needs_the_switch_a_bag_loop_starts_again_and_a_disabled_check_judges_nothing():
    frames = [scene(k) for k in range(10)] + [covered(scene(k)) for k in range(10, 60)]
    monitor = MotionAgreementMonitor(MotionAgreementSettings(exclude=False))
    verdict = feed(monitor, frames)
    assert verdict.level is WARN and not verdict.excluded and monitor.excluded == set()
    assert feed(monitor, [covered(scene(k)) for k in range(10)]).level is WARN  # back in time: held, nothing 0.5 s old yet
    assert monitor.update(10 * PERIOD_NS, covered(scene(10)), events())[C].value == pytest.approx(0.5)  # compared afresh
    off = MotionAgreementMonitor(MotionAgreementSettings(enabled=False))
    assert feed(off, frames).level is OK and off.last is None


@pytest.fixture(scope="module", params=["sun", "night"])
def drive(request):
    """Camera and event payloads of 3 s of a world drive at the shipped rig (20 Hz), and the config."""
    config = NodeConfig.load(config_file("any2seg.yaml"))
    seed = 31
    town = generate_town(seed, TownParams(duration_s=3.5))
    sim = Simulator(town, make_condition(request.param, np.random.default_rng(seed + 1)), config.rig, seed=seed, threads=1)
    payloads = [(sim.camera(t).frame, sim.events(t - 0.05, t)) for t in np.arange(0.3, 3.3, 0.05)]
    sim.close()
    return config, payloads


@pytest.mark.parametrize("spec, caught", [("", False), ("camera:occlusion(fraction=0.4)", True), ("events:flicker", False)])
def test_a_covered_lens_is_caught_within_2_s_by_day_and_at_night_and_nothing_else_is_blamed_on_the_camera(drive, spec, caught):
    config, payloads = drive
    failures = parse_failure_spec(spec)
    rng = np.random.default_rng(0)
    monitor = MotionAgreementMonitor(config.motion_agreement)
    onset = 10  # the fault from 0.5 s into the drive, once the monitor has a camera image that old
    warned_at = None
    for k, (camera, packet) in enumerate(payloads):
        for failure in failures if k >= onset else ():
            camera = apply_to_payload(failure, camera, rng)
            packet = apply_to_payload(failure, packet, rng)
        verdict = monitor.update(k * PERIOD_NS, encode_payload(C, camera, config.rig, config.encoding),
                                 encode_payload(E, packet, config.rig, config.encoding))[C]  # fmt: skip
        if verdict.level is WARN and warned_at is None:
            warned_at = (k - onset) * PERIOD_NS / 1e9
    if caught:
        assert warned_at is not None and warned_at <= 2.0, (warned_at, monitor.last, verdict)
    else:
        assert warned_at is None, (warned_at, monitor.last, verdict)
