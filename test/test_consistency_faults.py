"""Each quiet fault of the failure spec against the shipped checkpoint and its shipped calibration,
on world frames of the rig it was calibrated on (512×256): the faulty sensor's consistency score
falls below its warn threshold where the shipped model separates the fault, and no sensor does on
the nominal frames. Faults the shipped model does not separate are strict xfails: they document the
limit (README "Model-aware sensor health") and fail loudly once a checkpoint detects them."""
from __future__ import annotations

import numpy as np
import pytest

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.consistency import ConsistencyCalibration, calibration_path
from modseg_ros.core.encoding import encode_payload
from modseg_ros.core.failures import apply_to_payload, parse_failure_spec
from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.data.world.conditions import make_condition
from modseg_ros.data.world.simulator import Simulator
from modseg_ros.data.world.town import TownParams, generate_town
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.paths import config_file, model_file

CHECKPOINT = model_file("any2seg_b0.safetensors")
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


@pytest.fixture(scope="module")
def shipped():
    engine = SegmentationEngine.load(CHECKPOINT, threads=1)
    calibration = ConsistencyCalibration.load(calibration_path(CHECKPOINT))
    assert calibration.weights_sha256 == engine.info.weights_sha256, "models/: recalibrate with modseg calibrate"
    return engine, calibration.for_subset(MODALITIES)


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
