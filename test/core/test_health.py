"""Health monitor on an injected clock: no false alarms on nominal streams, detection within
2 sensor periods + 50 ms, every message check, hysteresis, recovery."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from modseg_ros.core.config import load_parameters, rig_from_parameters
from modseg_ros.core.health import SECTOR_SAMPLE, HealthConfig, HealthMonitor, StreamLimits, check_lidar
from modseg_ros.core.types import (
    CameraFrame,
    DepthFrame,
    EventFrame,
    EventPacket,
    HealthLevel,
    Modality,
    PointCloud,
    SensorSample,
)
from modseg_ros.data.synthetic import SyntheticStreet
from modseg_ros.paths import config_file

C, D, L, E = Modality.CAMERA, Modality.DEPTH, Modality.LIDAR, Modality.EVENTS
MS = 1_000_000
S = 1_000_000_000
RATES = {C: 20.0, D: 20.0, L: 10.0, E: 20.0}
TICK = 20 * MS  # the node's default health tick


def limits(rate):
    period = S / rate
    return StreamLimits(rate, timeout_ns=int(2 * period + 50 * MS - TICK), warn_rate_hz=0.7 * rate, error_rate_hz=0.3 * rate)


CONFIG = HealthConfig(streams={m: limits(r) for m, r in RATES.items()})


@pytest.fixture(scope="module")
def street():
    params = load_parameters(config_file("any2seg.yaml"))
    for key, value in (("width", 128), ("height", 64)):
        params[f"rig.camera.{key}"] = value
    return SyntheticStreet(rig_from_parameters(params), seed=1)


_CACHE = {}


def payload(street, modality, t_ns):
    """Frames of a 3 s loop of the street, distinct within the loop, generated once per test session."""
    key = (modality, t_ns % (3 * S))
    if key not in _CACHE:
        _CACHE[key] = _generate(street, modality, key[1] + S)
    return _CACHE[key]


def _generate(street, modality, t_ns):
    if modality is C:
        return street.camera(t_ns)
    if modality is D:
        return street.depth(t_ns)
    if modality is L:
        return street.lidar(t_ns)
    return street.events(t_ns, int(S / RATES[E]))


def schedule(duration_s, rates=RATES, jitter_ms=25, seed=0, stop=None):
    """(arrival, modality, stamp) of nominal streams: delivery latency 0..jitter_ms, per topic in order.
    ``stop`` maps a modality to the stamp after which it falls silent."""
    rng = random.Random(seed)
    events = []
    for modality, rate in rates.items():
        period = int(S / rate)
        last = 0
        for k in range(1, int(duration_s * rate) + 1):
            stamp = k * period
            if stop and modality in stop and stamp > stop[modality]:
                break
            arrival = max(stamp + rng.randint(0, jitter_ms * MS), last + 1)
            last = arrival
            events.append((arrival, modality, stamp))
    return sorted(events)


def run(monitor, street, events, until_ns):
    """Feed messages in arrival order and tick every TICK; returns the states after every tick."""
    timeline = []
    i = 0
    for now in range(0, until_ns, TICK):
        while i < len(events) and events[i][0] <= now:
            arrival, modality, stamp = events[i]
            data = payload(street, modality, stamp)
            monitor.observe(SensorSample(modality, stamp, arrival, modality.value, data), arrival)
            i += 1
        timeline.append((now, monitor.tick(now)))
    return timeline


def test_nominal_streams_raise_no_alarm(street):
    monitor = HealthMonitor(CONFIG, RATES)
    timeline = run(monitor, street, schedule(20.0, seed=4), 20 * S)
    after_start = [(now, states) for now, states in timeline if now > 200 * MS]
    bad = [(now / S, m, s.level, s.reason) for now, states in after_start for m, s in states.items() if s.level != HealthLevel.OK]
    assert bad == []
    _, final = timeline[-1]
    assert all(abs(final[m].rate_hz - r) / r < 0.1 for m, r in RATES.items())


@pytest.mark.parametrize("modality", [C, D, L, E])
@pytest.mark.parametrize("seed", range(3))
def test_stopped_sensor_is_declared_dead_within_two_periods_plus_50_ms(street, modality, seed):
    monitor = HealthMonitor(CONFIG, RATES)
    stop_at = 3 * S + seed * 7 * MS
    events = schedule(5.0, seed=seed, stop={modality: stop_at})
    last_arrival = max(a for a, m, _ in events if m is modality)
    timeline = run(monitor, street, events, 5 * S)
    dead_at = next(now for now, states in timeline if now > last_arrival and not states[modality].alive)
    bound = 2 * S / RATES[modality] + 50 * MS
    assert dead_at - last_arrival <= bound
    state = timeline[-1][1][modality]
    assert state.level == HealthLevel.ERROR and state.reason.startswith("no valid message for")
    assert all(timeline[-1][1][m].alive for m in RATES if m is not modality)


def test_never_received_is_stale_and_not_alive():
    monitor = HealthMonitor(CONFIG, RATES)
    state = monitor.tick(5 * S)[L]
    assert (state.level, state.alive, state.reason, state.age_s) == (HealthLevel.STALE, False, "never received", -1.0)


def feed(monitor, modality, frames, start_ns=S, rate=20.0):
    period = int(S / rate)
    states = []
    for k, data in enumerate(frames):
        t = start_ns + k * period
        states.append(monitor.observe(SensorSample(modality, t, t + MS, "x", data), t + MS))
    return states


def test_camera_blackout_fails_after_two_frames_and_recovers_after_three(street):
    monitor = HealthMonitor(CONFIG, RATES)
    good = [street.camera(S + k * 50 * MS) for k in range(10)]
    black = CameraFrame(np.zeros_like(good[0].image))
    states = feed(monitor, C, good[:3] + [black] * 4 + good[3:8])
    # black from frame 3: dead from the 2nd black frame (4) until the 3rd good one after (9)
    assert [s.alive for s in states] == [True] * 4 + [False] * 5 + [True] * 3
    assert states[4].level == HealthLevel.ERROR and states[4].reason.startswith("under-exposed")


@pytest.mark.parametrize(
    "make_bad,needle",
    [
        (lambda img: np.full_like(img, 255), "over-exposed"),
        (lambda img: np.full_like(img, 128), "blocked"),
        (lambda img: (img // 12).astype(np.uint8), "under-exposed"),
    ],
)
def test_camera_content_faults_are_named(street, make_bad, needle):
    monitor = HealthMonitor(CONFIG, RATES)
    frames = [CameraFrame(make_bad(street.camera(S + k * 50 * MS).image)) for k in range(3)]
    state = feed(monitor, C, frames)[-1]
    assert not state.alive and needle in state.reason


def test_depth_without_valid_pixels_fails(street):
    monitor = HealthMonitor(CONFIG, RATES)
    frames = [DepthFrame(np.full_like(street.depth(S).depth_m, np.nan)) for _ in range(2)]
    state = feed(monitor, D, frames)[-1]
    assert not state.alive and "have a depth" in state.reason


def test_lidar_checks_points_no_returns_and_blocked_sector(street):
    cloud = street.lidar(S)
    # most azimuths blocked (e.g. something on the sensor): no returns over 225°
    azimuth = np.arctan2(cloud.points[:, 1], cloud.points[:, 0])
    blocked = np.where((azimuth > -np.pi / 4)[:, None], np.nan, cloud.points).astype(np.float32)
    few = np.full_like(cloud.points, np.nan)
    few[:50] = cloud.points[np.isfinite(cloud.points).all(axis=1)][:50]
    for points, needle, level in ((blocked, "sector", HealthLevel.ERROR), (few, "only 50 returns", HealthLevel.ERROR)):
        monitor = HealthMonitor(CONFIG, RATES)
        state = feed(monitor, L, [PointCloud(points, cloud.intensity)] * 2 + [PointCloud(points + 0, cloud.intensity)], rate=10.0)[-1]
        assert state.level == level and needle in state.reason, state.reason
    monitor = HealthMonitor(CONFIG, RATES)
    state = feed(monitor, L, [street.lidar(S + k * 100 * MS) for k in range(3)], rate=10.0)[-1]
    assert state.level == HealthLevel.OK and state.details["blocked_sector_deg"] == 0.0


def test_blocked_sector_of_a_128_beam_scan_is_the_one_every_return_gives():
    """Above SECTOR_SAMPLE returns the sector check bins a random sample of them: on a 128×2048 scan
    it reports the sector that binning every return reports, nominal, blocked, and with sectors
    where only a few beams still return."""
    params = load_parameters(config_file("any2seg.yaml"))
    cloud = SyntheticStreet(rig_from_parameters(params), seed=1, lidar_rings=128, lidar_azimuths=2048).lidar(S)
    azimuth = np.degrees(np.arctan2(cloud.points[:, 1], cloud.points[:, 0]))
    bins = CONFIG.lidar.sector_bins

    def every_return(points):
        hit = points[np.isfinite(points).all(axis=1)]
        b = ((np.arctan2(hit[:, 1], hit[:, 0]) + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
        occupied = np.bincount(b, minlength=bins) > 0
        longest = run = 0
        for bin_occupied in np.concatenate([occupied, occupied]):  # twice round: runs across 180°
            run = 0 if bin_occupied else run + 1
            longest = max(longest, run)
        return min(longest, bins) * 360.0 / bins

    sparse = (cloud.ring % 16 != 0)[:, None]  # where "sparse": 8 of the 128 beams return
    cases = [((0, 0), None), ((-30, 45), None), ((10, 90), None), ((-170, 200), None), ((90, 300), None),
             ((0, 0), (-90, 120)), ((40, 60), (120, 180))]  # fmt: skip
    for (start, width), thin in cases:
        points = np.where(((azimuth - start) % 360 < width)[:, None], np.nan, cloud.points)
        if thin is not None:
            points = np.where((((azimuth - thin[0]) % 360 < thin[1])[:, None]) & sparse, np.nan, points)
        points = points.astype(np.float32)
        _, numbers = check_lidar(PointCloud(points, cloud.intensity), CONFIG.lidar)
        assert numbers["points"] > SECTOR_SAMPLE  # (the sampled path)
        assert numbers["blocked_sector_deg"] == every_return(points), (start, width, thin)


def test_events_silent_or_saturated_fail(street):
    packet = street.events(S, 50 * MS)
    empty = EventPacket(packet.x[:0], packet.y[:0], packet.t_ns[:0], packet.polarity[:0], packet.width, packet.height)
    ys, xs = np.mgrid[0 : packet.height, 0 : packet.width]
    storm = EventPacket(xs.ravel().astype(np.uint16), ys.ravel().astype(np.uint16), np.zeros(xs.size, np.int64),
                        np.ones(xs.size, np.int8), packet.width, packet.height)  # fmt: skip
    for bad, needle in ((empty, "no events"), (storm, "saturated"), (EventFrame(np.zeros((64, 128, 3), np.uint8)), "no events")):
        monitor = HealthMonitor(CONFIG, RATES)
        state = feed(monitor, E, [bad, bad])[-1]
        assert not state.alive and needle in state.reason


def test_frozen_payload_is_detected_after_frozen_count_repeats(street):
    monitor = HealthMonitor(CONFIG, RATES)
    frame = street.camera(S)
    states = feed(monitor, C, [CameraFrame(frame.image.copy()) for _ in range(6)])
    # frozen_count = 3: the 3rd identical frame is bad, the 4th confirms (fail_count = 2)
    assert [s.alive for s in states] == [True] * 3 + [False] * 3
    assert states[3].reason == "frozen: 4 identical payloads in a row"


@pytest.mark.parametrize(
    "stamp_of,needle",
    [
        (lambda now, k: 0, "zero stamp"),
        (lambda now, k: now + S, "in the future"),
        (lambda now, k: now - 2 * S, "stale stamp"),
        (lambda now, k: 2 * S - (k + 1) * 50 * MS, "not increasing"),
    ],
)
def test_bad_stamps_are_named(street, stamp_of, needle):
    monitor = HealthMonitor(CONFIG, RATES)
    for k in range(3):
        now = 2 * S + k * 50 * MS
        state = monitor.observe(SensorSample(C, stamp_of(now, k), now, "c", street.camera(now)), now)
    assert not state.alive and needle in state.reason


def test_malformed_messages_fail_the_sensor_and_are_named_in_the_timeout(street):
    monitor = HealthMonitor(CONFIG, RATES)
    feed(monitor, C, [street.camera(S)])
    monitor.reject(C, S + 50 * MS, "step 10 is smaller than width × pixel size = 384 for rgb8")
    state = monitor.reject(C, S + 100 * MS, "step 10 is smaller than width × pixel size = 384 for rgb8")
    assert not state.alive and state.reason.startswith("malformed message: step 10")
    assert state.details["rejected"] == 2
    state = monitor.tick(S + 400 * MS)[C]
    assert "no valid message" in state.reason and "last rejected: step 10" in state.reason


def test_low_rate_warns_then_errors_without_timing_out(street):
    slow = replace(CONFIG, streams={**CONFIG.streams, C: replace(CONFIG.streams[C], timeout_ns=S)})
    for rate, level in ((12.0, HealthLevel.WARN), (5.0, HealthLevel.ERROR)):
        monitor = HealthMonitor(slow, RATES)
        events = schedule(3.0, rates={C: rate}, jitter_ms=0)
        timeline = run(monitor, street, events, 3 * S)
        state = timeline[-1][1][C]
        assert state.level == level and "rate" in state.reason and abs(state.rate_hz - rate) < 1.5


def test_recovery_after_timeout_needs_recover_count_messages(street):
    monitor = HealthMonitor(CONFIG, RATES)
    feed(monitor, C, [street.camera(S + k * 50 * MS) for k in range(3)])
    assert not monitor.tick(2 * S)[C].alive
    states = feed(monitor, C, [street.camera(3 * S + k * 50 * MS) for k in range(4)], start_ns=3 * S)
    assert [s.alive for s in states] == [False, False, True, True]
    assert states[0].reason == "recovering after a timeout"


def test_rate_above_the_maximum_warns_and_keeps_the_sensor_alive(street):
    fast = replace(CONFIG, streams={**CONFIG.streams, C: replace(CONFIG.streams[C], max_rate_hz=40.0)})
    monitor = HealthMonitor(fast, RATES)
    events = schedule(3.0, rates={C: 20.0 * 10}, jitter_ms=0)  # a burst: ten times the nominal rate
    state = run(monitor, street, events, 3 * S)[-1][1][C]
    assert state.level == HealthLevel.WARN and state.alive and "above 40.0 Hz" in state.reason
    assert abs(state.rate_hz - 200.0) < 10


def run_starved(monitor, street, events, until_ns, stalls, queue_depth=5):
    """As ``run``, for a node whose callbacks are held up during ``stalls`` ([start, end) ns): no
    tick and no message is taken meanwhile; the tick after a stall runs first and is told how late
    it is, then the waiting messages are taken, at most ``queue_depth`` per sensor (KEEP_LAST drops
    the older ones, as the node's subscriptions do). Returns the states after every tick."""
    timeline, waiting, i = [], [], 0
    for now in range(0, until_ns, TICK):
        while i < len(events) and events[i][0] <= now:
            waiting.append(events[i])
            i += 1
        stall = next(((a, b) for a, b in stalls if a <= now < b), None)
        if stall is not None:
            continue
        late = max((now - a for a, b in stalls if a <= now - TICK < b), default=0)
        timeline.append((now, monitor.tick(now, late)))
        kept = [e for e in waiting if sum(1 for w in waiting if w[1] is e[1] and w[2] > e[2]) < queue_depth]
        for arrival, modality, stamp in kept:  # taken now, in the order they arrived
            monitor.observe(SensorSample(modality, stamp, arrival, modality.value, payload(street, modality, stamp)), now)
        waiting = []
    return timeline


def test_a_starved_node_blames_itself_not_its_sensors(street):
    # Every second the node is held up for 600 ms (CPU starved): queued messages arrive in a burst
    # and, beyond the queue depth, are lost (7 of a 20 Hz sensor's 20 a second: 13 Hz, below the
    # 14 Hz warn rate if it were judged); the stamps stay at the sensors' rates.
    monitor = HealthMonitor(CONFIG, RATES)
    stalls = [(k * S + 200 * MS, k * S + 800 * MS) for k in range(1, 6)]
    timeline = run_starved(monitor, street, schedule(6.0, seed=3), 6 * S, stalls)
    bad = [(now / S, m.value, s.reason) for now, states in timeline if now > 200 * MS for m, s in states.items()
           if s.level != HealthLevel.OK]  # fmt: skip
    assert bad == []
    assert monitor.node_late and monitor.late_episodes == 1  # one episode: a window never passed without a stall
    assert 580 * MS <= monitor.worst_late_ns <= 620 * MS


def test_bursty_arrivals_within_the_queue_are_judged_by_their_stamps(street):
    # Held up for 100 ms every 250 ms: not late enough to be the node's problem (half the shortest
    # timeout is 65 ms here: above it), nothing is lost, the rate counted by stamps stays nominal.
    monitor = HealthMonitor(CONFIG, RATES)
    stalls = [(k * 250 * MS + 200 * MS, k * 250 * MS + 240 * MS) for k in range(1, 20)]
    timeline = run_starved(monitor, street, schedule(5.0, seed=5), 5 * S, stalls)
    _, final = timeline[-1]
    assert not monitor.node_late and monitor.late_episodes == 0
    assert all(s.level == HealthLevel.OK for s in final.values())
    assert all(abs(final[m].rate_hz - r) / r < 0.1 for m, r in RATES.items())


def test_rates_are_judged_again_a_window_after_the_node_caught_up(street):
    # A camera at 10 Hz (warn below 14; its timeout long enough for that period): not judged while
    # the node is late, WARN a window after.
    slow = replace(CONFIG, streams={**CONFIG.streams, C: replace(CONFIG.streams[C], timeout_ns=S)})
    monitor = HealthMonitor(slow, RATES)
    events = schedule(4.0, rates={**RATES, C: 10.0}, seed=2)
    timeline = run_starved(monitor, street, events, 4 * S, [(S + 500 * MS, S + 800 * MS)])
    level_at = {now: states[C].level for now, states in timeline}
    assert level_at[S + 400 * MS] == HealthLevel.WARN  # before the stall: judged
    assert all(level_at[t] == HealthLevel.OK for t in level_at if S + 800 * MS <= t < S + 1800 * MS)
    assert level_at[3 * S] == HealthLevel.WARN and "rate 10.0 Hz" in timeline[-1][1][C].reason
    assert not monitor.node_late


@pytest.mark.parametrize("modality", [C, L])
def test_a_sensor_dying_while_the_node_is_late_is_declared_dead_within_the_delay(street, modality):
    monitor = HealthMonitor(CONFIG, RATES)
    stop_at = 3 * S
    events = schedule(5.0, seed=1, stop={modality: stop_at})
    last_arrival = max(a for a, m, _ in events if m is modality)
    stall = (3 * S + 20 * MS, 3 * S + 320 * MS)
    timeline = run_starved(monitor, street, events, 5 * S, [stall])
    states_at = dict(timeline)
    assert states_at[stall[1]][modality].alive  # the tick after the stall allows for it: messages may be waiting
    dead_at = next(now for now, states in timeline if now > last_arrival and not states[modality].alive)
    # the usual bound, from when the node could take the last message (after the stall)
    assert dead_at - max(last_arrival, stall[1]) <= 2 * S / RATES[modality] + 50 * MS
    assert all(timeline[-1][1][m].alive for m in RATES if m is not modality)
