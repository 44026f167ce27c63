"""Each quiet fault of the failure spec against the shipped checkpoint and its shipped calibration,
on world frames of the rig it was calibrated on (512×256): the faulty sensor's consistency score
falls below its warn threshold where the shipped model separates the fault, and no sensor does on
the nominal frames. Faults the shipped model does not separate are strict xfails: they document the
limit (docs/health.md) and fail loudly once a checkpoint detects them."""
from __future__ import annotations

import numpy as np
import pytest

from modseg_ros.core.checks.consistency import ConsistencyCalibration, Light, calibration_path, scene_brightness
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import encode_payload
from modseg_ros.core.types import MODALITIES, Modality, SensorSample
from modseg_ros.data.failures import apply_to_payload, parse_failure_spec
from modseg_ros.data.world.conditions import make_condition
from modseg_ros.data.world.simulator import Simulator
from modseg_ros.data.world.town import TownParams, generate_town
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.paths import config_file, model_file

CHECKPOINT = model_file("any2seg_b0.safetensors")
LARGER = model_file("any2seg_b0_128x256.safetensors")  # the opt-in checkpoint at 128×256
TIMES = (1.0, 1.6)  # seconds into the drive
# (failure, detected by the shipped checkpoint on these frames)
FAULTS = (
    ("lidar:rotation(yaw=3)", False),
    ("lidar:translation(y=0.5)", False),
    ("lidar:blockage(from=-15,to=15)", False),
    ("lidar:blockage(from=-45,to=45)", True),
    ("camera:color_cast", False),
    ("camera:smear", False),
    ("camera:occlusion(fraction=0.4)", False),
    ("depth:scale(factor=1.25)", False),
    ("depth:offset(m=1)", False),
    ("events:flicker", False),
)


@pytest.fixture(scope="module")
def world():
    """Raw sensor payloads of a sun and a night drive at the shipped rig, and the node's encoder."""
    config = NodeConfig.load(config_file("any2seg.yaml"))
    frames = []
    for condition in ("sun", "night"):
        seed = 31
        town = generate_town(seed, TownParams(duration_s=3.0))
        sim = Simulator(town, make_condition(condition, np.random.default_rng(seed + 1)), config.rig, seed=seed, threads=1)
        for t in TIMES:
            frames.append({Modality.CAMERA: sim.camera(t).frame, Modality.DEPTH: sim.depth(t),
                           Modality.LIDAR: sim.lidar_cloud(sim.lidar(t)), Modality.EVENTS: sim.events(t - 0.05, t)})  # fmt: skip
        sim.close()
    return config, frames


def calibrated(checkpoint):
    engine = SegmentationEngine.load(checkpoint, threads=1)
    calibration = ConsistencyCalibration.load(calibration_path(checkpoint))
    assert calibration.weights_sha256 == engine.info.weights_sha256, "models/: recalibrate with modseg calibrate"
    return engine, calibration.for_subset(MODALITIES)


@pytest.fixture(scope="module")
def shipped():
    return calibrated(CHECKPOINT)


def scores(world, engine, spec: str = "") -> dict[Modality, float]:
    """Mean frame score of each sensor over the frames, with ``spec``'s fault applied."""
    config, frames = world
    failures = parse_failure_spec(spec)
    rng = np.random.default_rng(0)
    per_frame = []
    for payloads in frames:
        encoded = {}
        for m, payload in payloads.items():
            for f in failures:
                if f.modality is m:
                    payload = apply_to_payload(f, payload, rng)
            encoded[m] = encode_payload(m, payload, config.rig, config.encoding)
        per_frame.append(engine.predict(encoded, output_size=(8, 16)).modality_consistency)
    return {m: float(np.mean([s[m] for s in per_frame])) for m in MODALITIES}


def test_no_sensor_is_inconsistent_on_nominal_sun_and_night_frames(world, shipped):
    engine, thresholds = shipped
    nominal = scores(world, engine)
    assert all(nominal[m] >= thresholds[m].warn_below for m in MODALITIES), (nominal, thresholds)


@pytest.mark.parametrize("spec, detected", FAULTS, ids=[f for f, _ in FAULTS])
def test_a_quiet_fault_makes_its_sensor_inconsistent(world, shipped, spec, detected, request):
    if not detected:
        request.applymarker(pytest.mark.xfail(strict=True, reason="the shipped checkpoint does not separate this fault"))
    engine, thresholds = shipped
    modality = parse_failure_spec(spec)[0].modality
    faulty = scores(world, engine, spec)
    assert faulty[modality] < thresholds[modality].warn_below, (faulty, thresholds[modality])


def test_the_128x256_checkpoint_with_lit_thresholds_separates_a_40_percent_camera_occlusion_by_day():
    """The opt-in checkpoint's camera score drops under 40 % mud by day below the thresholds of its
    lit frames, where the levels pooled over day and night (which must hold at night) sit too low."""
    config = NodeConfig.load(config_file("any2seg.yaml"))
    town = generate_town(31, TownParams(duration_s=4.0))
    sim = Simulator(town, make_condition("sun", np.random.default_rng(32)), config.rig, seed=31, threads=1)
    frames = [{Modality.CAMERA: sim.camera(t).frame, Modality.DEPTH: sim.depth(t), Modality.LIDAR: sim.lidar_cloud(sim.lidar(t)),
               Modality.EVENTS: sim.events(t - 0.05, t)} for t in (2.2, 2.8, 3.4)]  # fmt: skip
    sim.close()
    engine, pooled = calibrated(LARGER)
    calibration = ConsistencyCalibration.load(calibration_path(LARGER))
    brightness = scene_brightness({Modality.CAMERA: SensorSample(Modality.CAMERA, 0, 0, "camera", frames[0][Modality.CAMERA])})
    lit = calibration.for_subset(MODALITIES, calibration.light(brightness, None))
    assert calibration.light(brightness, None) is Light.LIT
    nominal = scores((config, frames), engine)
    assert all(nominal[m] >= lit[m].warn_below for m in MODALITIES), (nominal, lit)
    occluded = scores((config, frames), engine, "camera:occlusion(fraction=0.4)")[Modality.CAMERA]
    assert pooled[Modality.CAMERA].warn_below < lit[Modality.CAMERA].warn_below
    assert occluded < lit[Modality.CAMERA].warn_below, (occluded, lit[Modality.CAMERA])
