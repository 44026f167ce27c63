"""Fault injection against the live node: a separate node process on sim time (``modseg run``), the
stream process (``python -m modseg_ros.ros.stream``) injecting faults over real DDS, this process
recording the outputs.

Faults, one scenario each, in one node's life: sensors flapping at random, the clock and every stamp
jumping back (a bag loop), every sensor bursting at ten times its rate, one topic flooding at fifty
times its rate. Each time the node stays up, its memory stays bounded, its health and /diagnostics
say what happened, and masks keep coming from whatever is alive.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from harness import HERE, NodeProcess, play, stamp_ns

from modseg_ros.ros.stream import flapping

PARAMS = HERE / "params" / "node_test.yaml"
RATES = {"camera": 10, "depth": 10, "lidar": 5, "events": 10}
TIMEOUT_S = {"camera": 0.23, "depth": 0.23, "lidar": 0.43, "events": 0.23}  # node_test.yaml
S = 1_000_000_000
MB = 1 << 20


@pytest.fixture(scope="module")
def node(outputs):
    process = NodeProcess(PARAMS, ["-p", "use_sim_time:=true"])
    process.wait_ready(outputs)
    yield process
    assert process.stop() == 0, process.log()
    assert "Traceback" not in process.log(), process.log()


@pytest.fixture(scope="module")
def memory(node, outputs):
    """The node's RSS after a warm-up stream (first masks, every code path once), then checked at the end."""
    play({"duration_s": 3.0, "rate_hz": RATES, "sim_time": True, "sim_start_s": 500.0}, timeout_s=90)
    warm = node.resources().rss_bytes
    readings = []
    yield readings
    readings.append(node.resources().rss_bytes)
    assert max(readings) < warm * 1.1 + 30 * MB, f"RSS {warm / MB:.0f} MB after warm-up, then {[r // MB for r in readings]} MB"


def stream(scenario: dict, start_s: float) -> list[dict]:
    return play({"rate_hz": RATES, "sim_time": True, "sim_start_s": start_s, **scenario}, timeout_s=120)


def masks(outputs) -> list[tuple[int, dict[str, int]]]:
    """(mask stamp, {modality used: its message stamp}) of every segmentation/info received."""
    return [(stamp_ns(r.msg.header.stamp), dict(zip(r.msg.modalities_used, (stamp_ns(t) for t in r.msg.modality_stamps))))
            for r in outputs.get("info")]  # fmt: skip


def health(outputs, modality: str) -> list[tuple[int, object]]:
    """(node-clock stamp, SensorHealth) of one sensor, as published on sensor_health."""
    return [(stamp_ns(s.header.stamp), s) for _, s in outputs.health_of(modality)]


def check_made_of_sent_messages(outputs, played) -> None:
    sent = {(r["m"], r["stamp"]) for r in played}
    for stamp, used in masks(outputs):
        assert all((m, s) in sent for m, s in used.items()), (stamp, used)


def test_sensors_flapping_at_random(node, outputs, memory):
    duration = 10.0
    silences = flapping(7, list(RATES), duration)
    outputs.clear()
    start = 1000.0
    played = stream({"duration_s": duration, "silent": silences}, start)
    time.sleep(1.0)
    memory.append(node.resources().rss_bytes)
    assert node.alive()
    check_made_of_sent_messages(outputs, played)
    for modality, spans in silences.items():
        states = health(outputs, modality)
        for a, b in spans:
            detect = start + a + TIMEOUT_S[modality] + 0.1
            if b - a < TIMEOUT_S[modality] + 0.25:
                continue
            # the monitor declares it dead during the silence, with the reason
            dead = [s for t, s in states if detect * S <= t <= (start + b) * S and not s.alive]
            assert dead and "no valid message" in dead[0].reason, (modality, a, b)
    # masks keep coming from what is alive: every half second in which some sensor had been
    # streaming for a second has a mask
    on = {m: [(a, b) for a, b in _complement(spans, duration)] for m, spans in silences.items()}
    stamps = np.array([s for s, _ in masks(outputs)]) / S - start
    for t0 in np.arange(1.5, duration - 0.5, 0.5):
        if any(any(a <= t0 - 1.0 and t0 + 0.5 <= b for a, b in spans) for spans in on.values()):
            assert ((stamps >= t0) & (stamps < t0 + 0.5)).any(), f"no mask in [{t0}, {t0 + 0.5}) s"


def _complement(spans, duration):
    t, out = 0.0, []
    for a, b in spans:
        out.append((t, a))
        t = b
    out.append((t, duration))
    return out


def test_clock_jumping_back_like_a_looping_bag(node, outputs, memory):
    outputs.clear()
    before = int(outputs.pipeline_values().get("clock_jumps_back", 0))
    played = stream({"duration_s": 6.0, "jumps": [[3.0, 2.5]]}, 2000.0)
    time.sleep(1.0)
    assert node.alive()
    check_made_of_sent_messages(outputs, played)
    # after the jump the masks follow the new, earlier stamps at once (nothing waits for them to
    # pass the old ones), and keep coming
    stamps = [s for s, _ in masks(outputs)]
    jump = next(i for i in range(1, len(stamps)) if stamps[i] < stamps[i - 1])
    new_epoch = np.array(stamps[jump:]) / S - 2000.0
    assert new_epoch[0] <= 0.5 + 0.6 and new_epoch[-1] >= 3.0, new_epoch
    assert np.diff(new_epoch).max() <= 0.5, new_epoch
    # and no sensor was declared failed for it: a bag loop is not a sensor failure
    settled = outputs.get("health")[0].wall + 1.5  # (the clock jumped forward to this scenario first)
    for record in outputs.get("health"):
        if record.wall > settled:
            assert all(s.alive for s in record.msg.sensors), [(s.modality, s.reason) for s in record.msg.sensors]
    assert outputs.wait_for(lambda: int(outputs.pipeline_values().get("clock_jumps_back", 0)) > before, 3.0)
    assert "the clock jumped back" in node.log()


def test_every_sensor_bursting_at_ten_times_its_rate(node, outputs, memory):
    outputs.clear()
    start, burst = 3000.0, (2.0, 3.5)
    played = stream({"duration_s": 6.0, "bursts": {m: [[*burst, 10]] for m in RATES}}, start)
    time.sleep(1.0)
    memory.append(node.resources().rss_bytes)
    assert node.alive()
    check_made_of_sent_messages(outputs, played)
    # health reports the burst (rate above health.max_rate_factor × nominal) without failing anyone
    for modality, rate in RATES.items():
        during = [s for t, s in health(outputs, modality) if (start + burst[0] + 1.0) * S <= t <= (start + burst[1]) * S]
        assert any(s.level == 1 and "above" in s.reason and s.rate_hz > 2 * rate for s in during), (modality, during[-1:])
        assert all(s.alive for s in during)
    # masks throughout, and what the newest-wins hand-over dropped is counted
    stamps = np.array([s for s, _ in masks(outputs)]) / S - start
    for t0 in np.arange(1.0, 5.5, 0.5):
        assert ((stamps >= t0) & (stamps < t0 + 0.5)).any(), f"no mask in [{t0}, {t0 + 0.5}) s"
    counters = outputs.pipeline_values()
    offered, published = int(counters["bundles_offered"]), int(counters["masks_published"])
    dropped, failed = int(counters["bundles_dropped_newer_arrived"]), int(counters["segmentation_failures"])
    in_flight = offered - published - dropped  # at most one waiting in the mailbox and one being segmented
    assert failed == 0 and 0 <= in_flight <= 2, counters


def test_one_topic_flooding_does_not_starve_the_others(node, outputs, memory):
    outputs.clear()
    start, flood = 4000.0, (1.5, 5.0)
    played = stream({"duration_s": 6.0, "bursts": {"lidar": [[*flood, 50]]}}, start)
    time.sleep(1.0)
    memory.append(node.resources().rss_bytes)
    assert node.alive()
    check_made_of_sent_messages(outputs, played)
    window = ((start + flood[0] + 1.0) * S, (start + flood[1]) * S)  # a full rate window inside the flood
    lidar = [s for t, s in health(outputs, "lidar") if window[0] <= t <= window[1]]
    assert any(s.level == 1 and "above" in s.reason for s in lidar), lidar[-1:]
    # the other sensors are still heard at their rate and stay healthy ...
    for modality in ("camera", "depth", "events"):
        during = [s for t, s in health(outputs, modality) if window[0] <= t <= window[1]]
        assert during and all(s.alive and s.rate_hz >= 0.8 * RATES[modality] for s in during), [(s.rate_hz, s.reason) for s in during]
    # ... every camera frame still becomes a bundle, and masks keep coming
    offered = [(stamp_ns(r.msg.header.stamp), int({kv.key: kv.value for kv in s.values}["bundles_offered"]))
               for r in outputs.get("diagnostics") for s in r.msg.status if s.name.endswith(": pipeline")]  # fmt: skip
    inside = [(t, n) for t, n in offered if window[0] <= t <= window[1]]
    (t1, n1), (t2, n2) = inside[0], inside[-1]
    assert (n2 - n1) / ((t2 - t1) / S) >= 0.8 * RATES["camera"], inside
    stamps = np.array([s for s, _ in masks(outputs)]) / S - start
    for t0 in np.arange(1.0, 5.5, 0.5):
        assert ((stamps >= t0) & (stamps < t0 + 0.5)).any(), f"no mask in [{t0}, {t0 + 0.5}) s"
