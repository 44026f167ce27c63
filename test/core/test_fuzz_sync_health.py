"""Property-based fuzzing of the synchronizer and the health monitor on their own (core/sync.py,
core/health.py), without conversion in front of them: arbitrary payload shapes and values (empty,
one pixel, NaN / inf, large and zero point and event counts), stamps (zero, negative, future, backward,
duplicate, beyond any clock), node clocks that go back, arrival orders, alive sets that change at
any time. test_fuzz_perception.py drives both through Perception.receive with real messages.

Synchronizer: nothing raises; every bundle's trigger is in it and gives its stamp; every partner is
within its slop of the target; a message of an input without reuse is in one bundle at most;
bundle stamps increase unless an input restarted; queues and pending triggers stay within
queue_size. Health monitor: nothing raises (no numpy warning either); every modality has a state;
``rejected`` and ``received`` count exactly what each sensor was sent; a sensor whose last
``fail_count`` messages were rejected is not alive, nor one silent past its timeout.
"""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.health import HealthMonitor
from modseg_ros.core.sync import Synchronizer
from modseg_ros.core.types import MODALITIES, CameraFrame, DepthFrame, EventFrame, EventPacket, Modality, PointCloud, SensorSample

C, D, L, E = MODALITIES
MS, S = 1_000_000, 1_000_000_000
CONFIG = NodeConfig.from_parameters({"rig.camera.width": 64, "rig.camera.height": 32})

subsets = st.frozensets(st.sampled_from(MODALITIES))
stamps = st.one_of(
    st.integers(0, 4 * S),  # on the stream's clock
    st.sampled_from([0, -1, -(2**62), 2**62, 2**63 - 1]),  # zero, negative, absurd
)


@st.composite
def sync_events(draw):
    """(kind, modality, stamp, now, alive) steps; stamps mostly near a moving clock, sometimes anything."""
    steps, now = [], 10 * S
    for _ in range(draw(st.integers(1, 120))):
        now += draw(st.one_of(st.integers(0, 60 * MS), st.integers(-3 * S, 0)))  # mostly forward, sometimes back
        kind = draw(st.sampled_from(["push", "push", "push", "poll"]))
        stamp = draw(st.one_of(st.integers(now - 200 * MS, now + 10 * MS), stamps))
        steps.append((kind, draw(st.sampled_from(MODALITIES)), stamp, now, draw(st.one_of(st.just(frozenset(MODALITIES)), subsets))))
    return steps


@given(sync_events(), st.booleans())
def test_synchronizer_bundles_are_well_formed_and_bounded_whatever_it_is_fed(steps, duplicate):
    sync = Synchronizer(CONFIG.sync)
    limit = CONFIG.sync.queue_size
    used: dict[int, int] = {}
    last_stamp, resets = None, 0
    samples = {}
    for kind, modality, stamp, now, alive in steps:
        if kind == "push":
            sample = SensorSample(modality, stamp, now, modality.value, None)
            samples[id(sample)] = sample
            bundles = sync.push(sample, now, alive)
            if duplicate:  # the same stamp again (a duplicated message)
                again = SensorSample(modality, stamp, now, modality.value, None)
                samples[id(again)] = again
                bundles += sync.push(again, now, alive)
        else:
            bundles = sync.poll(now, alive)
        if sync.stats.resets != resets:
            last_stamp, resets = None, sync.stats.resets
        for bundle in bundles:
            trigger = bundle.samples[bundle.trigger]
            assert bundle.stamp_ns == trigger.stamp_ns
            assert bundle.missing.isdisjoint(bundle.samples)
            for m, s in bundle.samples.items():
                spec = CONFIG.sync.inputs[m]
                assert s.modality is m
                assert abs(s.stamp_ns - (bundle.stamp_ns + spec.offset_ns)) < spec.slop_ns or m is bundle.trigger
                if not spec.reuse:
                    used[id(s)] = used.get(id(s), 0) + 1
                    assert used[id(s)] == 1, f"{m.value} message at {s.stamp_ns} in two bundles"
            if last_stamp is not None:
                assert bundle.stamp_ns > last_stamp
            last_stamp = bundle.stamp_ns
        queued, pending = sync.backlog()
        assert all(n <= limit for n in queued.values()) and pending <= limit, (queued, pending)


def payloads():
    """Any payload of each modality's types: empty, tiny, NaN / inf, and big counts."""
    sizes = st.tuples(st.integers(0, 40), st.integers(0, 70))
    values = st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, 1e30, -5.0])

    def image(hw, seed):
        return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)

    def depth(hw, fill, seed):
        d = np.random.default_rng(seed).random(hw, dtype=np.float32) * 80
        d[: hw[0] // 2] = fill
        return d

    def cloud(n, fill, seed):
        rng = np.random.default_rng(seed)
        points = rng.normal(0, 30, (n, 3)).astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            points[: n // 3] = np.float32(fill)
        return PointCloud(points=points, intensity=rng.random(n, dtype=np.float32), ring=None)

    def packet(n, seed, huge_t):
        rng = np.random.default_rng(seed)
        t = rng.integers(-(2**62) if huge_t else -50 * MS, 1, n)
        return EventPacket(x=rng.integers(0, 70, n).astype(np.uint16), y=rng.integers(0, 40, n).astype(np.uint16),
                           t_ns=t, polarity=rng.choice([-1, 1], n).astype(np.int8), width=64, height=32)  # fmt: skip

    seeds = st.integers(0, 2**16)
    return st.one_of(
        st.builds(lambda hw, s: (C, CameraFrame(image(hw, s))), sizes, seeds),
        st.builds(lambda hw, f, s: (D, DepthFrame(depth(hw, f, s))), sizes, values, seeds),
        st.builds(lambda n, f, s: (L, cloud(n, f, s)), st.sampled_from([0, 1, 7, 1000, 20_000]), values, seeds),
        st.builds(lambda n, s, h: (E, packet(n, s, h)), st.sampled_from([0, 1, 50, 5000]), seeds, st.booleans()),
        st.builds(lambda hw, s: (E, EventFrame(image(hw, s))), sizes, seeds),
    )


@st.composite
def health_events(draw):
    steps, now = [], 10 * S
    for _ in range(draw(st.integers(1, 30))):
        now += draw(st.one_of(st.integers(0, 300 * MS), st.integers(-3 * S, 0), st.just(0)))
        kind = draw(st.sampled_from(["observe", "observe", "reject", "tick"]))
        if kind == "observe":
            modality, data = draw(payloads())
            steps.append((kind, modality, data, draw(st.one_of(st.integers(now - 100 * MS, now), stamps)), now))
        else:
            steps.append((kind, draw(st.sampled_from(MODALITIES)), None, 0, now))
    return steps


@given(health_events())
def test_health_monitor_counts_every_message_against_its_sensor_and_never_raises(steps):
    monitor = HealthMonitor(CONFIG.health, MODALITIES)
    sent = {m: {"observe": 0, "reject": 0} for m in MODALITIES}
    recent: dict[Modality, list[str]] = {m: [] for m in MODALITIES}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy warning is a bug too
        for kind, modality, data, stamp, now in steps:
            if kind == "observe":
                state = monitor.observe(SensorSample(modality, stamp, now, modality.value, data), now)
            elif kind == "reject":
                state = monitor.reject(modality, now, "fuzzed")
            else:
                monitor.tick(now)
                state = monitor.states[modality]
            if kind != "tick":
                sent[modality][kind] += 1
                recent[modality].append(kind)
            assert state.modality is modality
            states = monitor.states
            assert set(states) == set(MODALITIES)
            for m, s in states.items():
                assert s.details.get("received", 0) == sent[m]["observe"], (m, s.details)
                assert s.details.get("rejected", 0) == sent[m]["reject"], (m, s.details)
            fail = CONFIG.health.fail_count
            if recent[modality][-fail:] == ["reject"] * fail:
                assert not state.alive, state
    states = monitor.tick(max(now for *_, now in steps) + 10 * S)  # everyone silent far past their timeout
    assert not any(s.alive for s in states.values()), {m: s.reason for m, s in states.items()}
