"""The node over real DDS: a player process streams synthetic sensors, the node runs in another
process (``modseg run``), this process records its outputs.

One node process serves the checks of this file, in order: the sensors of each scenario fall
silent at its end, so every scenario also starts from "all sensors failed" and shows the recovery.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from harness import HERE, NodeProcess, play, sky_brightness, stamp_ns
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image


PARAMS = HERE / "params" / "node_test.yaml"
RATES = {"camera": 10, "depth": 10, "lidar": 5, "events": 10}
PERIOD_S = {m: 1.0 / r for m, r in RATES.items()}


@pytest.fixture(scope="module")
def node(outputs):
    process = NodeProcess(PARAMS)
    process.wait_ready(outputs)
    yield process
    assert process.stop() == 0, process.log()
    assert "Traceback" not in process.log(), process.log()


def stamps_of(records, modality):
    return [r["stamp"] for r in records if r["m"] == modality and r["ok"]]


def infos(outputs):
    return [(r.wall, r.msg) for r in outputs.get("info")]


def by_stamp(outputs, key):
    return {stamp_ns(r.msg.header.stamp): r.msg for r in outputs.get(key)}


def test_all_alive_masks_follow_the_camera_and_info_lists_all_four(node, outputs):
    outputs.clear()
    played = play({"duration_s": 4.0, "rate_hz": RATES})
    outputs.wait_for(lambda: len(outputs.get("info")) and stamp_ns(outputs.get("info")[-1].msg.header.stamp) >= stamps_of(played, "camera")[-1], 3.0)
    camera = stamps_of(played, "camera")
    received = infos(outputs)
    full = [msg for _, msg in received if list(msg.modalities_used) == ["camera", "depth", "lidar", "events"]]
    # after the recovery from the previous silence (3 good messages), every camera frame is a trigger
    steady = [s for s in camera if s >= camera[0] + 0.5e9]
    assert len(full) >= 0.9 * len(steady), f"{len(full)} masks for {len(steady)} camera frames"
    lidar = stamps_of(played, "lidar")
    for msg in full:
        stamps = dict(zip(msg.modalities_used, (stamp_ns(t) for t in msg.modality_stamps)))
        assert stamp_ns(msg.header.stamp) == stamps["camera"] == stamps["depth"] == stamps["events"]
        assert stamps["camera"] in camera
        assert stamps["lidar"] == min(lidar, key=lambda s: (abs(s - stamps["camera"]), s))  # nearest scan
        assert msg.header.frame_id == "camera_optical" and list(msg.modalities_missing) == []
        assert len(msg.modality_weights) == 4 and msg.inference_ms > 0 and msg.end_to_end_ms > 0
    masks, points = by_stamp(outputs, "mask"), by_stamp(outputs, "points")
    stamp = stamp_ns(full[-1].header.stamp)
    mask = masks[stamp]
    assert (mask.encoding, mask.height, mask.width, mask.header.frame_id) == ("mono8", 32, 64, "camera_optical")
    assert np.frombuffer(mask.data, np.uint8).max() < 25
    assert [f.name for f in points[stamp].fields] == ["x", "y", "z", "intensity", "label", "rgb"]
    assert points[stamp].width > 100  # returns inside and outside the camera view
    assert any(s.level == b"\x00" for _, s in outputs.pipeline_statuses())


def test_camera_dies_masks_continue_then_camera_recovers(node, outputs):
    outputs.clear()
    silence = (2.0, 4.0)
    played = play({"duration_s": 6.0, "rate_hz": RATES, "silent": {"camera": [list(silence)]}})
    time.sleep(0.5)
    camera = stamps_of(played, "camera")
    start = min(r["stamp"] for r in played)
    last_before = max(s for s in camera if s < start + silence[0] * 1e9)
    first_after = min(s for s in camera if s >= start + silence[1] * 1e9)
    received = infos(outputs)
    used = [(stamp_ns(m.header.stamp), tuple(m.modalities_used)) for _, m in received]
    # masks go on from depth + LiDAR + events through the camera's silence ...
    during = [s for s, u in used if last_before < s < first_after]
    assert during and all(u == ("depth", "lidar", "events") for s, u in used if last_before < s < first_after)
    stamps = [s for s, _ in used]
    gaps = np.diff([s for s in stamps if last_before <= s <= first_after]) / 1e9
    assert gaps.max() <= 2 * PERIOD_S["camera"] + 0.05 + 1e-6, gaps
    missing = [list(m.modalities_missing) for _, m in received if stamp_ns(m.header.stamp) in during]
    assert all(m == ["camera"] for m in missing)
    # ... the monitor says why, within the detection bound ...
    dead = [(w, s) for w, s in outputs.health_of("camera") if not s.alive and s.level == 2]
    assert dead and dead[0][1].reason.startswith("no valid message for")
    diag = [s for _, s in outputs.sensor_statuses("camera") if s.level == b"\x02"]
    assert diag and diag[0].message.startswith("no valid message for") and diag[0].hardware_id == "/camera/image"
    # ... the overlay is drawn over depth instead of the camera image ...
    overlays, colors = by_stamp(outputs, "overlay"), by_stamp(outputs, "color")
    brightness = {s: sky_brightness(overlays[s], colors[s]) for s in stamps if s in overlays and s in colors}
    with_camera = [b for s, b in brightness.items() if s <= last_before or s >= first_after + 1e9]
    without = [b for s, b in brightness.items() if s in during]
    assert min(with_camera) > 40 and max(without) < 5, (with_camera, without)
    # ... and the camera is fused again after it returns
    after = [u for s, u in used if s >= first_after + 0.5e9]
    assert after and all(u == ("camera", "depth", "lidar", "events") for u in after)


def test_all_sensors_fail_no_masks_error_then_lidar_alone_resumes(node, outputs):
    outputs.clear()
    played = play({"duration_s": 6.0, "rate_hz": RATES,
                   "silent": {"camera": [[1.5, 6.0]], "depth": [[1.5, 6.0]], "events": [[1.5, 6.0]], "lidar": [[1.5, 3.5]]}})  # fmt: skip
    time.sleep(0.5)
    start = min(r["stamp"] for r in played)
    lidar_back = min(s for s in stamps_of(played, "lidar") if s >= start + 3.5e9)
    last_camera = max(stamps_of(played, "camera"))
    used = [(stamp_ns(m.header.stamp), tuple(m.modalities_used)) for _, m in infos(outputs)]
    assert not [s for s, _ in used if last_camera < s < lidar_back]  # nothing while every sensor is down
    pipeline = [s for _, s in outputs.pipeline_statuses()]
    assert any(s.level == b"\x02" and s.message == "all sensors failed: no masks" for s in pipeline)
    resumed = [(s, u) for s, u in used if s >= lidar_back]
    assert resumed and all(u == ("lidar",) for _, u in resumed)
    assert resumed[0][0] - lidar_back <= 3 * PERIOD_S["lidar"] * 1e9  # recover_count = 3 scans
    overlays, colors = by_stamp(outputs, "overlay"), by_stamp(outputs, "color")
    s = resumed[-1][0]
    assert sky_brightness(overlays[s], colors[s]) < 5  # LiDAR rendering: nothing in the sky
    assert "all sensors failed" in node.log() and "fusing L" in node.log()


MALFORMED = [
    ("camera", "short_data", 0.5), ("camera", "bad_step", 0.8), ("camera", "bad_encoding", 1.1),
    ("camera", "empty", 1.4), ("camera", "absurd_size", 1.7),
    ("depth", "short_data", 0.6), ("depth", "bad_encoding", 0.9), ("depth", "empty", 1.2),
    ("lidar", "missing_field", 0.6), ("lidar", "field_beyond_point_step", 1.0), ("lidar", "short_data", 1.4),
    ("lidar", "empty", 1.8), ("events", "missing_field", 0.7), ("events", "short_data", 1.3),
]  # fmt: skip


def test_malformed_messages_are_dropped_counted_and_the_node_carries_on(node, outputs):
    outputs.clear()
    scenario = {"duration_s": 3.5, "rate_hz": RATES,
                "malformed": [{"modality": m, "kind": k, "at_s": t} for m, k, t in MALFORMED]}  # fmt: skip
    played = play(scenario)
    time.sleep(1.0)
    assert sum(not r["ok"] for r in played) == len(MALFORMED)
    assert node.proc.poll() is None
    expected = {m: sum(1 for mm, _, _ in MALFORMED if mm == m) for m in RATES}
    for modality, count in expected.items():
        last = outputs.sensor_statuses(modality)[-1][1]
        values = {kv.key: kv.value for kv in last.values}
        assert int(values["malformed_dropped"]) >= count, (modality, values)
    # one warning per topic: the rest are rate-limited (WARN_EVERY_S) and counted
    lines = node.log().splitlines()[-200:]
    first_problem = {"/camera/image": "data has", "/depth/image": "data has",
                     "/lidar/points": "no 'z' field", "/events/points": "no polarity field"}  # fmt: skip
    for topic, problem in first_problem.items():
        warnings = [line for line in lines if f"{topic}: dropped a malformed message" in line]
        assert len(warnings) == 1 and problem in warnings[0], warnings
    # masks kept coming, with every sensor back after the last bad message
    last_scan = max(stamps_of(played, "lidar"))
    last = [m for _, m in infos(outputs) if stamp_ns(m.header.stamp) <= last_scan][-1]
    assert list(last.modalities_used) == ["camera", "depth", "lidar", "events"]


def test_incompatible_subscriber_qos_is_reported_not_silent(node, outputs):
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # the node publishes VOLATILE
    subscription = outputs.node.create_subscription(Image, "segmentation/mask", lambda msg: None, latched)
    try:
        reported = outputs.wait_for(lambda: "segmentation/mask: a subscriber requests QoS incompatible" in node.log(), 10.0)
        assert reported, node.log()
        assert "DURABILITY" in node.log()
        outputs.clear()
        assert outputs.wait_for(lambda: any("incompatible subscriber QoS on segmentation/mask" in s.message
                                            for _, s in outputs.pipeline_statuses()), 5.0)  # fmt: skip
    finally:
        outputs.node.destroy_subscription(subscription)

