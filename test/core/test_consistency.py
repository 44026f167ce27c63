"""Model-aware sensor health, the ROS-free parts: smoothing, thresholds, hysteresis, exclusion,
thresholds per light, the health monitor's verdict, and the calibration file (round trip, a
version-1 file, another checkpoint's file refused)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from modseg_ros.core.checks.consistency import (
    CalibrationRule,
    ConsistencyCalibration,
    ConsistencyMonitor,
    ConsistencySettings,
    Light,
    Thresholds,
    calibration_path,
    scene_brightness,
    smooth,
    thresholds_from,
)
from modseg_ros.core.config import ModelConfig
from modseg_ros.core.health import HealthConfig, HealthMonitor, StreamLimits
from modseg_ros.core.types import CameraFrame, HealthLevel, Modality, SensorSample
from modseg_ros.errors import ConfigError
from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import save_checkpoint
from modseg_ros.model.loading import load_calibration
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.model.sidecar import SegmenterConfig

C, D, L, E = Modality.CAMERA, Modality.DEPTH, Modality.LIDAR, Modality.EVENTS
S = 1_000_000_000
PERIOD = S // 20
NOMINAL = Thresholds(median=0.9, warn_below=0.8, exclude_below=0.7, recover_above=0.85)


def calibration(sha: str = "abc", smoothing_s: float = 0.2) -> ConsistencyCalibration:
    per = {m: NOMINAL for m in (C, D, L, E)}
    return ConsistencyCalibration("net", sha, smoothing_s, {"CDLE": per, "CDL": {C: NOMINAL, D: NOMINAL, L: NOMINAL}})


def drive(monitor: ConsistencyMonitor, seconds: float, lidar: float, start_s: float = 0.0, others: float = 0.9):
    """Frames at 20 Hz with the LiDAR at ``lidar`` and the others at ``others``; the last verdicts."""
    verdicts = None
    for k in range(int(round(seconds * 20))):
        stamp = int(start_s * S) + k * PERIOD
        verdicts = monitor.update(stamp, {C: others, D: others, L: lidar, E: others})
    return verdicts


def test_smoothing_is_an_ema_that_skips_nan():
    stamps = [0, PERIOD, 2 * PERIOD, 3 * PERIOD]
    out = smooth(stamps, [1.0, math.nan, 0.0, 0.0], time_constant_s=0.1)
    assert out[0] == 1.0 and math.isnan(out[1])
    alpha = 1 - math.exp(-0.1 / 0.1)  # the NaN frame is skipped: 100 ms since the last score
    assert out[2] == pytest.approx(1 - alpha) and out[3] < out[2]


def test_thresholds_sit_below_every_nominal_value_and_are_ordered():
    values = np.random.default_rng(0).normal(0.9, 0.01, 500)
    t = thresholds_from(values, CalibrationRule())
    assert t.exclude_below < t.warn_below < values.min() and t.warn_below < t.recover_above < t.median
    with pytest.raises(ValueError, match="exclude_below <= warn_below"):
        Thresholds(median=0.9, warn_below=0.95, exclude_below=0.7, recover_above=0.92)


def test_one_hard_frame_does_not_flap_a_persistent_drop_warns_then_excludes_and_recovery_needs_time():
    monitor = ConsistencyMonitor(ConsistencySettings(enter_s=0.5, recover_s=1.0), calibration())
    assert drive(monitor, 2.0, lidar=0.9)[L].level is HealthLevel.OK
    verdicts = monitor.update(2 * S, {C: 0.9, D: 0.9, L: 0.1, E: 0.9})  # one very hard frame
    assert verdicts[L].level is HealthLevel.OK and not verdicts[L].excluded
    assert drive(monitor, 1.0, lidar=0.9, start_s=2.05)[L].level is HealthLevel.OK
    verdicts = drive(monitor, 0.3, lidar=0.5, start_s=3.05)  # below both thresholds, not yet for enter_s
    assert verdicts[L].level is HealthLevel.OK
    verdicts = drive(monitor, 1.0, lidar=0.5, start_s=3.35)
    assert verdicts[L].level is HealthLevel.WARN and verdicts[L].excluded
    assert verdicts[L].reason.startswith("inconsistent with other sensors: consistency 0.")
    assert "excluded from fusion" in verdicts[L].reason and monitor.excluded == {L}
    assert verdicts[C].level is HealthLevel.OK and not verdicts[C].excluded
    verdicts = drive(monitor, 0.8, lidar=0.9, start_s=4.35)  # recovering, but not for recover_s yet
    assert verdicts[L].level is HealthLevel.WARN and monitor.excluded == {L}
    verdicts = drive(monitor, 1.5, lidar=0.9, start_s=5.15)
    assert verdicts[L].level is HealthLevel.OK and monitor.excluded == frozenset()


def test_a_mild_drop_warns_without_excluding():
    monitor = ConsistencyMonitor(ConsistencySettings(enter_s=0.5), calibration())
    verdicts = drive(monitor, 2.0, lidar=0.75)
    assert verdicts[L].level is HealthLevel.WARN and not verdicts[L].excluded and monitor.excluded == frozenset()


def test_only_the_sensor_furthest_below_its_nominal_level_is_judged_a_partner_it_drags_down_is_not():
    monitor = ConsistencyMonitor(ConsistencySettings(enter_s=0.5), calibration())
    verdicts = None
    for k in range(40):  # the LiDAR far below, the depth camera just below its warn level
        verdicts = monitor.update(k * PERIOD, {C: 0.9, D: 0.78, L: 0.3, E: 0.9})
    assert verdicts[L].level is HealthLevel.WARN and verdicts[L].excluded
    assert verdicts[D].level is HealthLevel.OK and monitor.excluded == {L}


def test_exclusion_off_warns_only_and_check_off_judges_nothing():
    off = ConsistencyMonitor(ConsistencySettings(exclude=False), calibration())
    verdicts = drive(off, 2.0, lidar=0.3)
    assert verdicts[L].level is HealthLevel.WARN and not verdicts[L].excluded and off.excluded == frozenset()
    for monitor in (ConsistencyMonitor(ConsistencySettings(enabled=False), calibration()),
                    ConsistencyMonitor(ConsistencySettings(), None)):  # fmt: skip
        verdicts = drive(monitor, 2.0, lidar=0.3)
        assert verdicts[L].level is HealthLevel.OK and monitor.excluded == frozenset()
        assert verdicts[L].score == pytest.approx(0.3)  # scored and published all the same


def test_verdicts_hold_when_too_few_sensors_remain_and_smoothing_restarts_on_another_set():
    monitor = ConsistencyMonitor(ConsistencySettings(), calibration())
    drive(monitor, 2.0, lidar=0.3)
    nan = {C: math.nan, L: math.nan}  # two sensors: not measurable
    verdict = monitor.update(3 * S, nan)[L]
    assert verdict.level is HealthLevel.WARN and verdict.excluded
    verdict = monitor.update(3 * S + PERIOD, {C: 0.9, D: 0.9, L: 0.9})[L]  # CDL: restarts from this score
    assert verdict.score == pytest.approx(0.9) and verdict.thresholds == NOMINAL


DAY = Thresholds(median=0.9, warn_below=0.8, exclude_below=0.7, recover_above=0.85)
NIGHT = Thresholds(median=0.8, warn_below=0.65, exclude_below=0.5, recover_above=0.72)


def lit_and_dark(dark_below: float = 80.0) -> ConsistencyCalibration:
    pooled = calibration()
    by_light = {Light.LIT: {"CDLE": {m: DAY for m in (C, D, L, E)}}, Light.DARK: {"CDLE": {m: NIGHT for m in (C, D, L, E)}}}
    return ConsistencyCalibration("net", "abc", 0.2, {**pooled.thresholds, "DLE": {D: NOMINAL, L: NOMINAL, E: NOMINAL}},
                                  by_light=by_light, dark_below=dark_below)  # fmt: skip


def camera_bundle(brightness: int) -> dict:
    return {C: SensorSample(C, S, S, "camera_optical", CameraFrame(np.full((64, 128, 3), brightness, np.uint8)))}


def test_the_camera_tells_lit_from_dark_frames_whose_thresholds_then_judge_with_a_dead_band_at_dusk():
    assert scene_brightness(camera_bundle(47)) == pytest.approx(47.0) and math.isnan(scene_brightness({}))
    monitor = ConsistencyMonitor(ConsistencySettings(enter_s=0.5), lit_and_dark())
    at_night = None
    for k in range(40):  # a camera score that is normal at night and a fault by day
        at_night = monitor.update(k * PERIOD, {C: 0.72, D: 0.9, L: 0.9, E: 0.9}, brightness=45.0)
    assert at_night[C].level is HealthLevel.OK and at_night[C].thresholds == NIGHT and at_night[C].light is Light.DARK
    assert at_night[C].details()["consistency_light"] == "dark"
    dusk = monitor.update(40 * PERIOD, {C: 0.72, D: 0.9, L: 0.9, E: 0.9}, brightness=85.0)  # inside the dead band
    assert dusk[C].thresholds == NIGHT
    by_day = None
    for k in range(41, 80):
        by_day = monitor.update(k * PERIOD, {C: 0.72, D: 0.9, L: 0.9, E: 0.9}, brightness=120.0)
    assert by_day[C].level is HealthLevel.WARN and by_day[C].thresholds == DAY and by_day[C].light is Light.LIT
    without_camera = monitor.update(80 * PERIOD, {D: 0.9, L: 0.9, E: 0.9})  # no camera, no light: pooled
    assert without_camera[D].thresholds == NOMINAL and without_camera[D].light is None and monitor.light is None


def test_calibration_file_with_thresholds_per_light_round_trips_and_a_version_1_file_still_loads(tmp_path):
    written = lit_and_dark()
    written.save(tmp_path / "c.json")
    loaded = ConsistencyCalibration.load(tmp_path / "c.json")
    assert loaded == written and loaded.for_subset((C, D, L, E), Light.DARK) == {m: NIGHT for m in (C, D, L, E)}
    assert loaded.for_subset((C, D, L), Light.DARK) == {C: NOMINAL, D: NOMINAL, L: NOMINAL}  # pooled where no light's
    version_1 = written.to_dict()
    del version_1["light"]
    version_1["version"] = 1
    old = ConsistencyCalibration.from_dict(version_1, "old.json")
    assert old.by_light == {} and old.light(45.0, None) is None and old.for_subset((C, D, L, E), Light.DARK) == written.thresholds["CDLE"]


def test_the_health_monitor_reports_the_verdict_and_the_score():
    streams = {m: StreamLimits(20.0, timeout_ns=10 * S, warn_rate_hz=0.0, error_rate_hz=0.0) for m in (C, D, L, E)}
    health = HealthMonitor(HealthConfig(streams=streams), (C, D, L, E))
    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    assert health.observe(SensorSample(C, S, S, "camera_optical", CameraFrame(image)), S).level is HealthLevel.OK
    monitor = ConsistencyMonitor(ConsistencySettings(), calibration())
    health.judge("consistency", {C: drive(monitor, 2.0, lidar=0.9, others=0.3)[C]})
    state = health.tick(S + PERIOD)[C]
    assert state.level is HealthLevel.WARN and state.alive  # still fused unless excluded, still scored
    assert state.reason.startswith("inconsistent with other sensors")
    assert float(state.details["consistency"]) == pytest.approx(0.3, abs=0.01) and state.details["excluded_from_fusion"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = build(SegmenterConfig(arch="any2seg", input_size=(32, 64)))
    return save_checkpoint(model.eval(), tmp_path_factory.mktemp("net") / "net.safetensors", half=False)


def test_calibration_file_round_trip_and_loading_beside_the_checkpoint(checkpoint):
    engine = SegmentationEngine.load(checkpoint)
    model = ModelConfig(path=str(checkpoint), arch="any2seg", backend="torch", threads=1, process=False)
    settings = ConsistencySettings()
    none, note = load_calibration(settings, model, engine)
    assert none is None and "no consistency calibration" in note and "modseg calibrate" in note
    written = calibration(engine.info.weights_sha256)
    path = calibration_path(checkpoint)
    assert path == checkpoint.with_name("net.consistency.json")
    written.save(path)
    loaded, note = load_calibration(settings, model, engine)
    assert loaded == ConsistencyCalibration.load(path) and loaded.thresholds == written.thresholds
    assert loaded.for_subset((C, D, L)) == {C: NOMINAL, D: NOMINAL, L: NOMINAL} and str(path) in note
    off, note = load_calibration(ConsistencySettings(enabled=False), model, engine)
    assert off is None and "enabled: false" in note
    path.unlink()


def test_a_calibration_for_other_weights_is_refused(checkpoint, tmp_path):
    engine = SegmentationEngine.load(checkpoint)
    model = ModelConfig(path=str(checkpoint), arch="any2seg", backend="torch", threads=1, process=False)
    other = tmp_path / "other.consistency.json"
    calibration("0" * 64).save(other)
    with pytest.raises(ConfigError, match=r"'health.consistency.calibration'.*other weights.*recalibrate: modseg calibrate"):
        load_calibration(ConsistencySettings(calibration=str(other)), model, engine)
    calibration("0" * 64).save(calibration_path(checkpoint))  # the default file, stale: the check is off, said once
    judged, note = load_calibration(ConsistencySettings(), model, engine)
    assert judged is None and "other weights" in note and "not judged" in note
    calibration_path(checkpoint).write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a consistency calibration"):
        ConsistencyCalibration.load(calibration_path(checkpoint))
    calibration_path(checkpoint).unlink()


def test_calibrate_replays_nominal_bags_and_writes_thresholds_for_every_judgeable_set(checkpoint, tmp_path):
    from replay_fixtures import PARAMS, small_world_bag

    from modseg_ros.eval.calibrate import NominalDrives, calibrate_checkpoint

    bag = small_world_bag(tmp_path / "nominal", frames=30)
    rule = CalibrationRule(min_light_frames=5)
    written, path = calibrate_checkpoint(checkpoint, [bag], PARAMS, NominalDrives(tmp_path / "unused"), rule)
    try:
        assert path == calibration_path(checkpoint) and not (tmp_path / "unused").exists()
        assert set(written.thresholds) == {"CDLE", "CDL", "CDE", "CLE", "DLE"}  # what the node sees when one sensor dies
        assert set(written.thresholds["CLE"]) == {C, L, E} and written.provenance["frames"] >= 25
        # a sunny drive: lit thresholds for the sets with the camera, none for the dark
        assert set(written.by_light) == {Light.LIT} and set(written.by_light[Light.LIT]) == {"CDLE", "CDL", "CDE", "CLE"}
        assert written.dark_below == rule.dark_below
        engine = SegmentationEngine.load(checkpoint)
        model = ModelConfig(path=str(checkpoint), arch="any2seg", backend="torch", threads=1, process=False)
        loaded, _ = load_calibration(ConsistencySettings(), model, engine)
        assert loaded is not None and loaded.thresholds == written.thresholds
    finally:
        path.unlink()


def test_calibrate_command_names_a_missing_checkpoint_or_bag_before_any_work(tmp_path, checkpoint):
    from replay_fixtures import modseg

    missing = modseg("calibrate", str(tmp_path / "nope.safetensors"), "--cache", str(tmp_path / "cache"))
    assert missing.returncode == 1 and f"no checkpoint at {tmp_path / 'nope.safetensors'}" in missing.stderr
    assert not (tmp_path / "cache").exists()
    no_bag = modseg("calibrate", str(checkpoint), str(tmp_path / "nobag"))
    assert no_bag.returncode == 1 and f"{tmp_path / 'nobag'}: no such bag or folder" in no_bag.stderr
