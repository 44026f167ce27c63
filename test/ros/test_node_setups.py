"""The node started the ways users start it: a YAML parameter file on top of another, remapped
inputs, reliable input QoS (and a publisher that does not match it), and sim time from /clock."""
from __future__ import annotations

import time

from harness import HERE, NodeProcess, make_world_bag, play, replay_bag, stamp_ns

from modseg_ros.paths import config_file

PARAMS = HERE / "params" / "node_test.yaml"

OVERRIDES = """\
any2seg:
  ros__parameters:
    inputs:
      modalities: [lidar, camera]
      qos_reliability: reliable
    outputs:
      frame_id: front_camera_optical
"""


def test_parameters_from_yaml_remapping_and_reliable_inputs(outputs, tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(OVERRIDES)
    node = NodeProcess(PARAMS, ["--params-file", str(overrides), "-r", "camera/image:=/front/image",
                                "-r", "lidar/points:=/roof/points"])  # fmt: skip
    try:
        node.wait_ready(outputs)
        assert "segmenting CL (camera: /front/image, lidar: /roof/points" in node.log()
        played = play({"duration_s": 3.0, "rate_hz": {"camera": 10, "lidar": 5}, "qos": "reliable",
                       "topics": {"camera": "/front/image", "lidar": "/roof/points"}})  # fmt: skip
        time.sleep(0.5)
        infos = [r.msg for r in outputs.get("info")]
        camera = {r["stamp"] for r in played if r["m"] == "camera"}
        full = [m for m in infos if list(m.modalities_used) == ["camera", "lidar"]]
        assert len(full) >= 0.8 * len(camera)
        assert all(stamp_ns(m.header.stamp) in camera and m.header.frame_id == "front_camera_optical" for m in full)
        assert all(list(m.modalities_missing) == [] for m in full)  # only camera and LiDAR are configured
        statuses = outputs.sensor_statuses("camera")
        assert statuses and statuses[-1][1].hardware_id == "/front/image"
        assert not outputs.sensor_statuses("depth")

        # a best-effort publisher cannot reach a reliable subscription: reported, not silent
        outputs.clear()
        play({"duration_s": 2.0, "rate_hz": {"camera": 10}, "qos": "best_effort", "wait_for": 0,
              "topics": {"camera": "/front/image"}})  # fmt: skip
        assert outputs.wait_for(lambda: "/front/image: a publisher's QoS is incompatible" in node.log(), 5.0), node.log()
        assert "RELIABILITY" in node.log()
        assert outputs.wait_for(
            lambda: any("a publisher's QoS is incompatible (RELIABILITY)" in s.message for _, s in outputs.sensor_statuses("camera")), 5.0
        )
        assert not outputs.get("info")  # nothing arrived, so nothing was segmented
    finally:
        assert node.stop() == 0, node.log()


def test_sim_time_from_clock_drives_stamps_health_and_detection(outputs):
    outputs.clear()
    node = NodeProcess(PARAMS, ["-p", "use_sim_time:=true"])
    try:
        node.wait_ready(outputs)
        silence = (2.0, 3.5)
        played = play({"duration_s": 5.0, "rate_hz": {"camera": 10, "depth": 10, "lidar": 5, "events": 10},
                       "sim_time": True, "sim_rate": 0.5, "sim_start_s": 1000.0,
                       "silent": {"camera": [list(silence)]}}, timeout_s=90)  # fmt: skip
        time.sleep(0.5)
        infos = [r.msg for r in outputs.get("info")]
        stamps = [stamp_ns(m.header.stamp) for m in infos]
        assert stamps and all(1000e9 <= s <= 1006e9 for s in stamps)  # sim stamps, not wall-clock ones
        last_camera = max(r["stamp"] for r in played if r["m"] == "camera" and r["stamp"] < 1000e9 + silence[0] * 1e9)
        during = [m for m in infos if last_camera < stamp_ns(m.header.stamp) < 1000e9 + silence[1] * 1e9]
        assert during and all(list(m.modalities_used) == ["depth", "lidar", "events"] for m in during)
        # detection measured on the node's clock (sim time): at most 2 periods + 50 ms after the last frame
        dead = [s for _, s in outputs.health_of("camera") if not s.alive and s.level == 2]
        detected = stamp_ns(dead[0].header.stamp)
        assert 0 < detected - last_camera <= (2 * 0.1 + 0.05) * 1e9 + 20e6, (detected - last_camera) / 1e9
        # rates are sim-time rates: 10 Hz, although the wall clock saw 5 messages a second
        depth = [s for _, s in outputs.health_of("depth") if s.alive]
        assert abs(depth[-1].rate_hz - 10.0) < 1.5
    finally:
        assert node.stop() == 0, node.log()


def test_world_bag_replayed_on_sim_time_with_a_camera_blackout(outputs, tmp_path):
    # the shipped parameters (20 Hz camera, 10 Hz LiDAR), the bag's 128×64 camera, half speed; the
    # consistency check off: the shipped calibration is for the 512×256 rig
    bag = make_world_bag(tmp_path / "drive", 3.0, failures="camera:blackout@1.2-2.0s")
    outputs.clear()
    node = NodeProcess(config_file("any2seg.yaml"), ["-p", "use_sim_time:=true", "-p", "rig.camera.width:=128",
                                                     "-p", "rig.camera.height:=64", "-p", "model.threads:=1",
                                                     "-p", "health.consistency.enabled:=false"])  # fmt: skip
    try:
        node.wait_ready(outputs)
        camera = replay_bag(bag, rate=0.5)
        time.sleep(0.5)
        start = camera[0]
        used = {stamp_ns(r.msg.header.stamp): tuple(r.msg.modalities_used) for r in outputs.get("info")}
        assert used and all(start - 100_000_000 <= s <= camera[-1] for s in used)  # stamped on the bag's clock
        before = [u for s, u in used.items() if start + 0.4e9 <= s < start + 1.2e9]
        dark = [u for s, u in used.items() if start + 1.4e9 <= s < start + 2.0e9]
        after = [u for s, u in used.items() if start + 2.4e9 <= s]
        assert before and all(u == ("camera", "depth", "lidar", "events") for u in before)
        assert dark and all(u == ("depth", "lidar", "events") for u in dark)
        assert after and all(u == ("camera", "depth", "lidar", "events") for u in after)
        dead = [s for _, s in outputs.health_of("camera") if s.level == 2]
        assert dead and "under-exposed" in dead[0].reason
        # nothing else was ever declared unhealthy: no false alarm on the world's nominal streams
        for modality in ("depth", "lidar", "events"):
            late = [s for _, s in outputs.health_of(modality) if stamp_ns(s.header.stamp) > start + 0.4e9]
            assert late and all(s.level == 0 for s in late), [s.reason for s in late if s.level]
    finally:
        assert node.stop() == 0, node.log()


def test_an_inconsistent_sensor_is_warned_excluded_and_scored_in_info_and_diagnostics(outputs, tmp_path):
    """The model-aware check through the live node: a calibration that finds the LiDAR inconsistent
    whatever it sees (its nominal level set at a perfect 1.0) makes it WARN and leaves it out of the
    fusion; segmentation/info and /diagnostics carry every sensor's score."""
    from modseg_ros.core.checks.consistency import ConsistencyCalibration, Thresholds
    from modseg_ros.core.types import Modality
    from modseg_ros.model.sidecar import read_sidecar
    from modseg_ros.paths import model_file

    info = read_sidecar(model_file("any2seg_b0.json"))
    never = Thresholds(median=0.5, warn_below=0.01, exclude_below=0.0, recover_above=0.02)
    always = Thresholds(median=1.0, warn_below=0.9998, exclude_below=0.9997, recover_above=0.9999)
    per = {m: always if m is Modality.LIDAR else never for m in Modality}
    calibration = tmp_path / "strict.consistency.json"
    ConsistencyCalibration(info.name, info.weights_sha256, 0.2, {"CDLE": per}).save(calibration)
    overrides = tmp_path / "consistency.yaml"
    overrides.write_text(f"any2seg:\n  ros__parameters:\n    health:\n      consistency: {{enabled: true, exclude: true, calibration: '{calibration}'}}\n")
    node = NodeProcess(PARAMS, ["--params-file", str(overrides)])
    try:
        node.wait_ready(outputs)
        assert f"consistency thresholds from {calibration}" in node.log()
        outputs.clear()
        play({"duration_s": 3.0, "rate_hz": {"camera": 10, "depth": 10, "lidar": 5, "events": 10}})
        time.sleep(0.5)
        infos = [r.msg for r in outputs.get("info")]
        excluded = [m for m in infos if list(m.modalities_excluded) == ["lidar"]]
        assert excluded and stamp_ns(excluded[0].header.stamp) < stamp_ns(infos[-1].header.stamp), [list(m.modalities_excluded) for m in infos]
        for msg in excluded:
            assert list(msg.modalities_used) == ["camera", "depth", "events"] and len(msg.modality_weights) == 3
            assert len(msg.modality_consistency) == 4 and all(0.0 < c <= 1.0 for c in msg.modality_consistency)
        lidar = [s for _, s in outputs.sensor_statuses("lidar")]
        warned = [s for s in lidar if s.message.startswith("inconsistent with other sensors")]
        assert warned and warned[-1].level == b"\x01" and "excluded from fusion" in warned[-1].message
        values = {kv.key: kv.value for kv in warned[-1].values}
        assert 0.0 < float(values["consistency"]) < 0.9998 and values["excluded_from_fusion"] == "True"
        assert "range_misregistration" in values and values["range_excluded_from_fusion"] == "False"  # the range check agrees
        depth = {kv.key: kv.value for kv in outputs.sensor_statuses("depth")[-1][1].values}
        assert float(depth["range_shift"]) == 0.0 and depth["range_shift_limit"] == "3.000"
        camera = {kv.key: kv.value for kv in outputs.sensor_statuses("camera")[-1][1].values}
        assert 0.0 < float(camera["consistency"]) <= 1.0 and camera["excluded_from_fusion"] == "False"
        assert "motion_still_share" in camera and camera["motion_excluded_from_fusion"] == "False"  # the camera-events check reports too
        assert any("excluded as inconsistent: lidar" in s.message for _, s in outputs.pipeline_statuses())
    finally:
        assert node.stop() == 0, node.log()
