"""The node's converters, health monitor and synchronizer on the embedded world's bags, read with
rosbags in log-time order (the log time is when a car's node would have received each message):
no false alarm in any weather, the scheduled failures detected within the bound, the bundles the
node would segment, all message layouts the world writes understood."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import make_world_bag
from rosbags.highlevel import AnyReader

from modseg_ros.core import messages
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.perception import Perception
from modseg_ros.core.types import MODALITIES, HealthLevel, Modality

WIDTH, HEIGHT = 128, 64
TICK_NS = 20_000_000  # the node's health tick
CONDITIONS = ("sun", "cloud", "fog", "rain", "night")
FAILURES = ("camera:blackout@1.0-1.5s,lidar:silent@1.0-1.5s,events:burst@2.4-2.7s,camera:frozen@2.8-3.2s,"
            "lidar:blockage(from=-150,to=150)@3.0-3.4s")
SECONDS = {"nominal": 2.0, "failures": 3.6}


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("world_bags")
    made = {c: make_world_bag(root / c, SECONDS["nominal"], c, width=WIDTH, height=HEIGHT) for c in CONDITIONS}
    made["failures"] = make_world_bag(root / "failures", SECONDS["failures"], "sun", FAILURES, WIDTH, HEIGHT)
    return made


def node_config() -> NodeConfig:
    return NodeConfig.from_parameters({"rig.camera.width": WIDTH, "rig.camera.height": HEIGHT})


INPUTS = {f"/{source.topic}": source for source in messages.sensor_inputs(node_config()).values()}  # as the node


def replay(bag: Path):
    """Feed the bag to the node's perception as the node would see it; health is ticked every
    20 ms. Returns the start time, the states after every tick, the bundles, and the samples."""
    config = NodeConfig.from_parameters({"rig.camera.width": WIDTH, "rig.camera.height": HEIGHT, "inputs.encode_on_arrival": False})
    perception = Perception(config, engine=None)  # health and sync only: nothing is encoded or segmented
    ticks, bundles, samples = [], [], []
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in INPUTS]
        start = None
        next_tick = None
        for connection, log_ns, raw in reader.messages(connections=connections):
            if start is None:
                start = next_tick = log_ns
            while next_tick <= log_ns:
                states, done = perception.tick(next_tick)
                ticks.append((next_tick, states))
                bundles += done
                next_tick += TICK_NS
            source, msg = INPUTS[connection.topic], reader.deserialize(raw, connection.msgtype)
            intake = perception.receive(source.modality, lambda: source.sample(msg, connection.topic, log_ns), log_ns)
            assert intake.sample is not None, intake.problem
            samples.append(intake.sample)
            bundles += intake.bundles
    return start, ticks, bundles, samples


@pytest.mark.parametrize("condition", CONDITIONS)
def test_nominal_drives_raise_no_alarm_and_fuse_all_four(bags, condition):
    start, ticks, bundles, samples = replay(bags[condition])
    settled = start + 250_000_000  # three messages of every sensor (recover_count) have arrived
    alarms = {(m.value, s.level.name, s.reason) for t, states in ticks if t > settled
              for m, s in states.items() if s.level != HealthLevel.OK}  # fmt: skip
    assert alarms == set()
    camera = [s.stamp_ns for s in samples if s.modality is Modality.CAMERA]
    full = [b for b in bundles if b.modalities == MODALITIES]
    assert len(full) >= len(camera) - 6 and all(b.stamp_ns in camera for b in full)
    lidar = np.array([s.stamp_ns for s in samples if s.modality is Modality.LIDAR])
    for bundle in full:  # the LiDAR partner is the scan nearest to the frame
        assert bundle.samples[Modality.LIDAR].stamp_ns == lidar[np.argmin(np.abs(lidar - bundle.stamp_ns))]
        assert bundle.samples[Modality.DEPTH].stamp_ns - bundle.stamp_ns < 1_000_000


def test_world_messages_convert_to_the_documented_payloads(bags):
    _, _, _, samples = replay(bags["sun"])
    by = {m: next(s for s in samples if s.modality is m) for m in MODALITIES}
    assert by[Modality.CAMERA].data.image.shape == (HEIGHT, WIDTH, 3)
    depth = by[Modality.DEPTH].data.depth_m
    assert depth.dtype == np.float32 and 0.3 <= np.nanmin(depth) and np.nanmax(depth) <= 120.0
    cloud = by[Modality.LIDAR].data
    assert cloud.points.shape[1] == 3 and 10_000 < len(cloud.points) <= 32 * 512  # returns only
    assert cloud.ring.max() == 31 and 0 <= cloud.intensity.min() and cloud.intensity.max() <= 1
    events = by[Modality.EVENTS].data
    assert len(events.x) > 0 and set(np.unique(events.polarity)) <= {-1, 1}
    # the CARLA-layout times are absolute nanoseconds: relative to the stamp they span one camera period
    assert -60_000_000 <= events.t_ns.min() and events.t_ns.max() <= 1_000_000


def first_dead(ticks, modality, after_ns):
    return next((t, s) for t, s in ticks if t >= after_ns and not s[modality].alive)


def test_scheduled_failures_are_detected_within_the_bound_and_recovered(bags):
    start, ticks, bundles, samples = replay(bags["failures"])
    s = 1_000_000_000

    def last_good(modality, before_s):
        return max(x.arrival_ns for x in samples if x.modality is modality and x.stamp_ns < start + before_s * s)

    # camera blackout at 1.0 s: dark frames, ERROR within 2 periods + 50 ms of the first black frame
    t, states = first_dead(ticks, Modality.CAMERA, start + int(1.0 * s))
    first_black = min(x.arrival_ns for x in samples if x.modality is Modality.CAMERA and x.stamp_ns >= start + int(1.0 * s))
    assert t - first_black <= 150_000_000 and "under-exposed" in states[Modality.CAMERA].reason
    # LiDAR silent from 1.0 s: ERROR within 2 periods + 50 ms of its last scan
    t, states = first_dead(ticks, Modality.LIDAR, start + int(1.0 * s))
    assert t - last_good(Modality.LIDAR, 1.0) <= 250_000_000 and "no valid message" in states[Modality.LIDAR].reason
    # meanwhile the bundles go on from depth and events (depth triggers)
    dark = [b for b in bundles if start + int(1.3 * s) <= b.stamp_ns < start + int(1.5 * s)]
    assert dark and all(b.trigger is Modality.DEPTH and b.modalities == (Modality.DEPTH, Modality.EVENTS) for b in dark)
    # both are back and fused (after recover_count good messages)
    recovered = [b for b in bundles if start + int(2.0 * s) <= b.stamp_ns < start + int(2.4 * s)]
    assert recovered and all(b.modalities == MODALITIES for b in recovered)
    # events burst at 2.4 s: saturated
    t, states = first_dead(ticks, Modality.EVENTS, start + int(2.4 * s))
    assert t - start - 2.4 * s <= 150_000_000 and "saturated" in states[Modality.EVENTS].reason
    # the camera freezes at 2.8 s: identical payloads
    t, states = first_dead(ticks, Modality.CAMERA, start + int(2.8 * s))
    assert t - start - 2.8 * s <= 150_000_000 and "frozen" in states[Modality.CAMERA].reason
    # LiDAR blocked over 300° from 3.0 s
    t, states = first_dead(ticks, Modality.LIDAR, start + int(3.0 * s))
    assert t - start - 3.0 * s <= 250_000_000 and "sector" in states[Modality.LIDAR].reason
