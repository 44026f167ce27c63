"""The failure spec: one parser, clear errors, and failures that do to payloads and stamps what they say."""
import math

import numpy as np
import pytest

from modseg_ros.core.types import CameraFrame, DepthFrame, EventPacket, Modality, PointCloud
from modseg_ros.data.failures import (
    DELIVER_CASES,
    FailureInjector,
    apply_to_payload,
    apply_to_stamp,
    format_failure_spec,
    load_failure_schedule,
    make_failure,
    parse_failure_spec,
)
from modseg_ros.errors import ConfigError

RNG = np.random.default_rng(0)


def scene_image(h=64, w=96):
    """A textured image: vertical stripes plus a gradient, so blur and exposure have something to change."""
    x = np.arange(w)[None, :, None]
    y = np.arange(h)[:, None, None]
    return (60 + 60 * ((x // 4) % 2) + y + np.zeros((h, w, 3))).astype(np.uint8)


def test_parse_the_documented_examples():
    failures = parse_failure_spec("camera:blackout@3-6s,lidar:silent@5-8s")
    assert [(f.modality, f.kind, f.start_s, f.end_s) for f in failures] == [
        (Modality.CAMERA, "blackout", 3.0, 6.0),
        (Modality.LIDAR, "silent", 5.0, 8.0),
    ]
    f = parse_failure_spec("lidar:blockage(from=-45, to=45)@2s-4.5s")[0]
    assert f.params == {"from": -45.0, "to": 45.0} and (f.start_s, f.end_s) == (2.0, 4.5)
    assert parse_failure_spec("camera:stamp-delay(ms=120)@1500ms-")[0].kind == "stamp_delay"
    f = parse_failure_spec("camera:stamp_delay(ms=120)@1500ms-")[0]
    assert f.start_s == 1.5 and math.isinf(f.end_s) and f.params["ms"] == 120.0
    whole = parse_failure_spec("depth:dropout")[0]
    assert whole.active(0.0) and whole.active(1e6) and whole.params["fraction"] == 0.3  # defaults filled in
    assert parse_failure_spec("") == []


def test_canonical_string_round_trips():
    text = "camera:overexposure(gain=8)@1-2s, events:lowres(factor=8)@0.5-3s, lidar:silent@4s-, depth:region"
    failures = parse_failure_spec(text)
    assert parse_failure_spec(format_failure_spec(failures)) == failures


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("camera:blakout@3-6s", "unknown kind 'blakout'"),
        ("cam:blackout@3-6s", "unknown modality 'cam'"),
        ("lidar:motionblur@1-2", "'motionblur' does not apply to lidar"),
        ("camera:blackout@6-3s", "ends (3s) before it starts (6s)"),
        ("camera:blackout@x-3s", "bad time 'x'"),
        ("camera:blackout@3s", "'@START-END'"),
        ("lidar:blockage(form=3)@1-2", "unknown parameter 'form'"),
        ("lidar:jitter(sigma=big)", "must be a number"),
        ("camera", "expected MODALITY:KIND"),
    ],
)
def test_bad_specs_name_the_bad_token(spec, fragment):
    with pytest.raises(ConfigError) as err:
        parse_failure_spec("depth:dropout@1-2s," + spec)
    message = str(err.value)
    assert fragment in message and spec.split("@")[0].split("(")[0] in message and "depth:dropout" not in message


def test_yaml_schedule_strings_and_mappings(tmp_path):
    path = tmp_path / "failures.yaml"
    path.write_text("failures:\n  - camera:blackout@3-6s\n  - {modality: lidar, kind: blockage, start: 1, end: 2, params: {from: 0, to: 90}}\n")
    failures = load_failure_schedule(str(path))
    assert [f.kind for f in failures] == ["blackout", "blockage"] and failures[1].params["to"] == 90.0
    path.write_text("- {modality: lidar, start: 1}\n")
    with pytest.raises(ConfigError, match="missing 'kind'"):
        load_failure_schedule(path)


def test_camera_failures_change_the_image_as_named():
    frame = CameraFrame(scene_image())
    lum = lambda f: float(f.image.mean())  # noqa: E731
    black = apply_to_payload(make_failure("camera", "blackout"), frame, RNG)
    assert black.image.shape == frame.image.shape and black.image.max() == 0
    bright = apply_to_payload(make_failure("camera", "overexposure"), frame, RNG)
    dark = apply_to_payload(make_failure("camera", "underexposure"), frame, RNG)
    assert lum(bright) > lum(frame) + 60 and lum(dark) < lum(frame) / 3
    assert (bright.image == 255).mean() > 0.5  # saturated
    blurred = apply_to_payload(make_failure("camera", "motionblur", params={"length": 9}), frame, RNG)
    grad = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
    assert grad(blurred.image) < 0.3 * grad(frame.image)  # the stripes are smeared horizontally
    assert np.allclose(np.diff(blurred.image.astype(float), axis=0).mean(), np.diff(frame.image.astype(float), axis=0).mean(), atol=0.05)


def test_depth_lidar_and_event_failures():
    depth = DepthFrame(np.full((64, 96), 10.0, np.float32))
    dropped = apply_to_payload(make_failure("depth", "dropout", params={"fraction": 0.4, "cell": 8}), depth, np.random.default_rng(1))
    assert 0.25 < np.isnan(dropped.depth_m).mean() < 0.55
    region = apply_to_payload(make_failure("depth", "region"), depth, RNG).depth_m
    assert np.isnan(region[32, 48]) and np.isfinite(region[2, 2])
    as_sent = DepthFrame(np.array([[10.0, 0.0, -1.0, np.inf, np.nan]], np.float32))  # a driver's no-depth markers
    shifted = apply_to_payload(make_failure("depth", "offset", params={"m": 2.0}), as_sent, RNG).depth_m
    assert shifted[0, 0] == 12.0 and np.isnan(shifted[0, 1:]).all()

    angles = np.radians(np.arange(0, 360, 1.0))
    cloud = PointCloud(np.stack([10 * np.cos(angles), 10 * np.sin(angles), np.zeros_like(angles)], 1).astype(np.float32),
                       np.ones(len(angles), np.float32), np.zeros(len(angles), np.uint16))  # fmt: skip
    jittered = apply_to_payload(make_failure("lidar", "jitter", params={"sigma": 0.2}), cloud, np.random.default_rng(2))
    assert 0.15 < float(np.std(jittered.points - cloud.points)) < 0.25
    sector = apply_to_payload(make_failure("lidar", "blockage", params={"from": -45, "to": 45}), cloud, RNG)
    az = np.degrees(np.arctan2(sector.points[:, 1], sector.points[:, 0]))
    assert len(sector.points) == 360 - 91 and np.all(np.abs(az) > 45) and len(sector.ring) == len(sector.points)
    assert len(apply_to_payload(make_failure("lidar", "blockage"), cloud, RNG).points) == 0  # full by default
    sparse = apply_to_payload(make_failure("lidar", "sparse", params={"keep": 0.25}), cloud, np.random.default_rng(3))
    assert 50 < len(sparse.points) < 130

    packet = EventPacket(np.array([0, 7, 95], np.uint16), np.array([0, 9, 63], np.uint16), np.array([-3, -2, -1], np.int64),
                         np.array([1, -1, 1], np.int8), 96, 64)  # fmt: skip
    low = apply_to_payload(make_failure("events", "lowres", params={"factor": 8}), packet, RNG)
    assert (low.width, low.height) == (12, 8) and low.x.tolist() == [0, 0, 11] and low.y.tolist() == [0, 1, 7]
    burst = apply_to_payload(make_failure("events", "burst", params={"density": 2.0}), packet, np.random.default_rng(4))
    assert len(burst.x) > 96 * 64 and np.all(np.diff(burst.t_ns) >= 0) and np.all(burst.t_ns <= 0)


def test_stamp_faults():
    rng = np.random.default_rng(5)
    assert apply_to_stamp(make_failure("depth", "stamp_delay", params={"ms": 100}), 10**9, rng) == 10**9 + 100_000_000
    assert apply_to_stamp(make_failure("lidar", "stamp_jump", params={"ms": 500}), 10**9, rng) == 500_000_000
    noisy = [apply_to_stamp(make_failure("camera", "stamp_jitter", params={"ms": 5}), 0, rng) for _ in range(400)]
    assert 3e6 < np.std(noisy) < 7e6
    assert apply_to_stamp(make_failure("camera", "blackout"), 123, rng) == 123


def test_injector_silence_frozen_frames_and_determinism():
    failures = parse_failure_spec("camera:silent@1-2s,camera:frozen@3-4s,lidar:jitter@0-10s")
    injector = FailureInjector(failures, seed=7)
    frames = {t: CameraFrame(np.full((4, 4, 3), int(t * 10), np.uint8)) for t in (0.5, 1.5, 2.5, 3.2, 3.6, 4.5)}
    out = {t: injector.process(Modality.CAMERA, t, int(t * 1e9), f) for t, f in frames.items()}
    assert out[1.5] is None  # silent
    assert out[3.2][1].image[0, 0, 0] == 25 and out[3.6][1].image[0, 0, 0] == 25  # frozen on the last frame before
    assert out[3.6][0] == int(3.6e9)  # with fresh stamps
    assert out[4.5][1].image[0, 0, 0] == 45  # live again

    cloud = PointCloud(np.zeros((100, 3), np.float32), np.zeros(100, np.float32))
    a = FailureInjector(failures, seed=7).process(Modality.LIDAR, 2.0, 0, cloud)[1].points
    b = FailureInjector(failures, seed=7).process(Modality.LIDAR, 2.0, 0, cloud)[1].points
    c = FailureInjector(failures, seed=8).process(Modality.LIDAR, 2.0, 0, cloud)[1].points
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_every_deliver_corner_case_has_a_failure():
    assert sorted(DELIVER_CASES) == ["eventlowres", "lidarjitter", "motionblur", "overexposure", "underexposure"]
