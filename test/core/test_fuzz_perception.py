"""Property-based fuzzing of the node's intake: the health monitor and the synchronizer fed through
``Perception.receive`` with the node's own converters (core/messages.py ``sensor_inputs``) on real rclpy
messages, exactly as ros/node.py's subscriptions do.

Sequences interleave good messages of the synthetic street, the stream's known malformed kinds and
random adversarial messages (test/fuzz_messages.py), with zero, future, stale, backward, duplicate
and absurd stamps, ticks, polls and node clocks jumping backwards (a bag loop on sim time).

Properties: nothing raises (no numpy warning either); every rejected message is counted against
its own sensor and nothing else; a sensor whose last ``fail_count`` messages were all bad is not
alive; queues and caches stay within their bounds; bundles are well-formed, made of accepted
messages, and the real network segments them; garbage on one sensor never costs the others a bundle.
"""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from fuzz_messages import EVENT_LAYOUTS, LIDAR_LAYOUT, clouds, images
from hypothesis import given
from hypothesis import strategies as st

from modseg_ros.core import messages
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.perception import Perception
from modseg_ros.core.types import MODALITIES, HealthLevel, Modality
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.ros.stream import Frames, Scenario, break_message

C, D, L, E = MODALITIES
MS, S = 1_000_000, 1_000_000_000
WIDTH, HEIGHT = 64, 32
RATES = {"camera": 20.0, "depth": 20.0, "lidar": 10.0, "events": 20.0}
CONFIG = NodeConfig.from_parameters({"rig.camera.width": WIDTH, "rig.camera.height": HEIGHT})
SOURCES = messages.sensor_inputs(CONFIG)
FRAMES = Frames(Scenario(duration_s=1.0, rate_hz=RATES, width=WIDTH, height=HEIGHT, loop=4))
MALFORMED = {  # the stream's damage kinds that apply to each message type
    C: ("short_data", "bad_step", "bad_encoding", "empty", "absurd_size"),
    D: ("short_data", "bad_step", "bad_encoding", "empty", "absurd_size"),
    L: ("missing_field", "field_beyond_point_step", "short_data", "empty", "absurd_size"),
    E: ("missing_field", "field_beyond_point_step", "short_data", "empty", "absurd_size"),
}
STAMPS = ("next", "next", "next", "zero", "future", "stale", "backward", "duplicate", "huge")
ALWAYS_BAD_STAMPS = ("zero", "future", "stale", "huge")  # whatever came before


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(1)  # two intra-op threads on a loaded 2-core machine are many times slower
    return SegmentationEngine.untrained("any2seg", input_size=(HEIGHT, WIDTH))


def good_message(modality: Modality, k: int, stamp_ns: int):
    return FRAMES.message(modality.value, k, stamp_ns)


def with_stamp(msg, stamp_ns: int):
    sec, nanosec = divmod(stamp_ns, S)
    msg.header.stamp = Time(sec=max(min(sec, 2**31 - 1), -(2**31)), nanosec=nanosec)
    return msg


def garbage(data, modality: Modality):
    """A random adversarial message of the modality's type (any stamp, any content)."""
    if SOURCES[modality].msg_type == messages.IMAGE:
        return data.draw(images()).msg
    return data.draw(clouds([LIDAR_LAYOUT] if modality is L else EVENT_LAYOUTS)).msg


class Run:
    """Drives a fresh Perception, counting what each sensor was sent and checking every step."""

    def __init__(self, engine):
        self.perception = Perception(CONFIG, engine)
        self.now = 10 * S
        self.last_good = {m: None for m in MODALITIES}  # last accepted stamp per sensor
        self.k = Counter()
        self.accepted, self.rejected = Counter(), Counter()
        self.bad_streak = Counter()  # consecutive known-bad messages per sensor
        self.samples: set[int] = set()
        self.bundles = []

    def stamp(self, modality: Modality, kind: str, rng: np.random.Generator) -> int:
        last = self.last_good[modality]
        nominal = self.now - int(rng.integers(0, 20 * MS))
        if kind == "next":
            return nominal if last is None else max(nominal, last + MS)
        if kind == "zero":
            return 0
        if kind == "future":
            return self.now + int(rng.integers(300 * MS, 1000 * S))
        if kind == "stale":
            return self.now - int(rng.integers(2 * S, 1000 * S))
        if kind == "huge":
            return (2**31 - 1) * S
        if last is None:
            return nominal
        return last if kind == "duplicate" else last - int(rng.integers(MS, 10 * S))

    def send(self, modality: Modality, msg, known_bad: bool | None) -> None:
        source = SOURCES[modality]
        now = self.now
        intake = self.perception.receive(modality, lambda: source.sample(msg, source.topic, now), now)
        if intake.sample is None:
            self.rejected[modality] += 1
            assert intake.problem and not intake.problem.startswith("unusable content"), intake.problem
        else:
            self.accepted[modality] += 1
            self.samples.add(id(intake.sample))
            self.last_good[modality] = intake.sample.stamp_ns
        if known_bad is not None:
            assert (intake.sample is None) == (known_bad == "malformed"), (modality, known_bad, intake.problem)
        self.bad_streak[modality] = self.bad_streak[modality] + 1 if known_bad else 0
        self.take(intake.bundles)
        self.check(modality)

    def take(self, bundles) -> None:
        for bundle in bundles:
            assert bundle.trigger in bundle.samples and bundle.samples[bundle.trigger].stamp_ns == bundle.stamp_ns
            assert not set(bundle.samples) & bundle.missing and set(bundle.samples) | bundle.missing == set(CONFIG.inputs.modalities)
            assert all(id(s) in self.samples and s.modality is m for m, s in bundle.samples.items())
        self.bundles += bundles

    def check(self, sent_to: Modality | None = None) -> None:
        states = self.perception.health.states
        for m, state in states.items():  # attribution: each sensor's counts are its own messages
            assert state.details["rejected"] == self.rejected[m] and state.details["received"] == self.accepted[m], m
            assert state.alive == (state.level < HealthLevel.ERROR and self.accepted[m] > 0)
            assert np.isfinite(state.rate_hz) and state.rate_hz >= 0
        if sent_to is not None and self.bad_streak[sent_to] >= CONFIG.health.fail_count:
            assert not states[sent_to].alive, (sent_to, states[sent_to])
        queued, pending = self.perception.sync.backlog()
        assert max(queued.values()) <= CONFIG.sync.queue_size and pending <= CONFIG.sync.queue_size
        assert self.perception.backlog()["encodings_cached"] <= Perception.ENCODINGS_KEPT * len(MODALITIES)


step = st.tuples(
    st.sampled_from(MODALITIES),
    st.sampled_from(("good", "good", "good", "malformed", "garbage")),
    st.sampled_from(STAMPS),
    st.integers(0, 120),  # ms of node clock before the message
    st.sampled_from(("none", "none", "tick", "poll", "jump_back")),
    st.integers(0, 2**32 - 1),
)


@given(st.lists(step, min_size=1, max_size=40), st.data())
def test_any_message_sequence_is_judged_counted_and_bounded(engine, steps, data):
    run = Run(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy warning on a message is a bug too
        for modality, kind, stamp_kind, advance_ms, action, seed in steps:
            rng = np.random.default_rng(seed)
            run.now += advance_ms * MS
            if action == "jump_back":  # a bag loops on sim time: the clock and every stamp go back
                run.now -= int(rng.integers(1, 30)) * S
            elif action == "tick":
                run.take(run.perception.tick(run.now)[1])
            elif action == "poll":
                run.take(run.perception.poll(run.now))
            run.k[modality] += 1
            if kind == "garbage":
                run.send(modality, garbage(data, modality), None)
                continue
            stamp = run.stamp(modality, stamp_kind, rng)
            msg = with_stamp(good_message(modality, run.k[modality], stamp), stamp)
            if kind == "malformed":
                msg = break_message(msg, modality.value, MALFORMED[modality][seed % len(MALFORMED[modality])])
                run.send(modality, msg, "malformed")
            else:
                bad_stamp = stamp_kind in ALWAYS_BAD_STAMPS or (stamp_kind in ("backward", "duplicate") and run.last_good[modality] is not None)
                run.send(modality, msg, "stamp" if bad_stamp else False)
        run.take(run.perception.poll(run.now + S))
        run.check()
        if run.bundles:  # whatever was bundled, the network segments it and the outputs render
            seg = run.perception.segment(run.bundles[-1])
            assert seg.labels.shape == (HEIGHT, WIDTH) and seg.labels.max() < 25
            run.perception.cross_check(seg)
            run.perception.render(seg)


@given(st.lists(st.tuples(st.sampled_from((L, E)), st.integers(0, 2**32 - 1)), min_size=1, max_size=60), st.data())
def test_garbage_on_lidar_and_events_never_costs_camera_and_depth_a_bundle(engine, noise, data):
    """Camera and depth stream nominally at 20 Hz; LiDAR and events send adversarial messages in
    between (random content, random stamps: backwards, far future, duplicates). Every camera frame
    after the first (which depth, heard first, may pre-empt) still becomes a bundle, with its depth."""
    run = Run(engine)
    noise = iter(noise)
    cameras = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(40):
            run.now = 10 * S + k * 50 * MS
            stamp = run.now - 5 * MS
            run.send(D, with_stamp(good_message(D, k, stamp), stamp), False)
            run.send(C, with_stamp(good_message(C, k, stamp), stamp), False)
            cameras.append(stamp)
            for _ in range(int(np.random.default_rng(k).integers(0, 3))):
                modality, seed = next(noise, (None, 0))
                if modality is None:
                    break
                msg = garbage(data, modality)
                if seed % 3 == 0:  # a plausible message with an implausible stamp
                    rng = np.random.default_rng(seed)
                    stamp_kind = STAMPS[seed % len(STAMPS)]
                    msg = with_stamp(good_message(modality, k, 0), run.stamp(modality, stamp_kind, rng))
                run.send(modality, msg, None)
            run.take(run.perception.poll(run.now))
        run.take(run.perception.poll(run.now + S))
    triggered = [b.stamp_ns for b in run.bundles if b.trigger is C and D in b.samples]
    assert set(cameras[1:]) <= set(triggered), (len(triggered), len(cameras), run.perception.sync.stats)
