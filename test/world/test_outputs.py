"""`modseg world` writes DELIVER-layout datasets and rosbag2 bags that mean what they say."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from rosbags.highlevel import AnyReader

from modseg_ros.core.config import load_parameters, rig_from_parameters
from modseg_ros.core.encoding import EncodingConfig, encode_payload
from modseg_ros.core.palette import CLASSES, IGNORE
from modseg_ros.core.types import Modality
from modseg_ros.data.failures import parse_failure_spec
from modseg_ros.data.world.bag_writer import EVENT_FIELDS, EVENT_STEP, TOPICS, cloud_dtype
from modseg_ros.data.world.deliver_writer import labels_from_semantic_png
from modseg_ros.data.world.drive import DEFAULT_CLOCKS
from modseg_ros.data.world.generate import WorldOptions, generate, plan_deliver
from modseg_ros.data.world.sensors import LidarModel
from modseg_ros.data.world.simulator import SensorModels, scaled_rig
from modseg_ros.paths import config_file

SMALL = dict(width=96, height=48, models=SensorModels(lidar=LidarModel(beams=16, azimuths=256)), threads=1)
START = WorldOptions(out=Path(".")).start_ns


def modseg(*args):
    return subprocess.run([sys.executable, "-m", "modseg_ros.cli", *args], capture_output=True, text=True, timeout=300)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# --- DELIVER layout ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deliver(tmp_path_factory):
    out = tmp_path_factory.mktemp("deliver")
    options = WorldOptions(out=out, frames=6, seed=4, conditions=("sun", "night"), sequence_frames=2, corner_fraction=0.0,
                           failures=tuple(parse_failure_spec("camera:motionblur@0-100s")), split="val", **SMALL)  # fmt: skip
    summary = generate(options)
    return out, options, summary


def test_deliver_layout_and_names(deliver):
    out, options, summary = deliver
    assert summary.frames == 6
    images = sorted(out.glob("img/*/val/*/*_rgb_front.png"))
    assert len(images) == 6
    for img in images:
        condition, split, sequence = img.parts[-4:-1]
        assert condition in ("sun", "night") and split == "val" and sequence.endswith("_motionblur")
        for folder, token in (("depth", "depth"), ("event", "event"), ("lidar", "lidar"), ("semantic", "semantic")):
            other = Path(str(img).replace("/img/", f"/{folder}/").replace("_rgb", f"_{token}"))
            assert other.is_file()
            array = np.asarray(Image.open(other))
            assert array.shape == (48, 96, 3) and array.dtype == np.uint8
    meta = yaml.safe_load((out / "world.yaml").read_text())
    assert meta["classes"] == list(CLASSES) and meta["rig"]["camera"]["intrinsics"]["width"] == 96
    assert meta["splits"]["val"]["seed"] == 4 and meta["splits"]["val"]["frames"] == 6
    assert meta["splits"]["val"]["corner_frames"] == {"motionblur": 6}


def test_deliver_files_hold_the_shared_encodings(deliver):
    """Re-render one frame and check every PNG is exactly encode_payload of that frame's payloads."""
    out, options, _ = deliver
    from modseg_ros.data.world.conditions import make_condition
    from modseg_ros.data.world.simulator import Simulator
    from modseg_ros.data.world.town import TownParams, generate_town

    plan = plan_deliver(options)[1]
    rig = scaled_rig(rig_from_parameters(load_parameters(config_file("any2seg.yaml"))), 96, 48)
    town = generate_town(plan.seed, TownParams(duration_s=plan.times[-1] + 1.0))
    sim = Simulator(town, make_condition(plan.condition, np.random.default_rng(plan.seed + 1)), rig, options.models, plan.seed, 1)
    t = plan.times[0]
    shot = sim.camera(t)
    enc = EncodingConfig()
    base = out / "img" / plan.condition / "val" / f"{plan.name}_motionblur" / f"{plan.first_id:06d}_rgb_front.png"
    read = lambda folder, token: np.asarray(Image.open(str(base).replace("/img/", f"/{folder}/").replace("_rgb", f"_{token}")))  # noqa: E731
    assert np.array_equal(read("depth", "depth"), encode_payload(Modality.DEPTH, sim.depth(t), rig, enc))
    assert np.array_equal(read("lidar", "lidar"), encode_payload(Modality.LIDAR, sim.lidar_cloud(sim.lidar(t)), rig, enc))
    assert np.array_equal(read("event", "event"), encode_payload(Modality.EVENTS, sim.events(t - 0.05, t), rig, enc))
    labels = labels_from_semantic_png(read("semantic", "semantic"))
    assert np.array_equal(labels, shot.labels)
    # DELIVER's loader rule on channel 0: 0 and 255 -> ignore, then -1
    channel = read("semantic", "semantic")[..., 0].copy()
    channel[channel == 255] = 0
    assert np.array_equal(np.where(channel == 0, IGNORE, channel - 1).astype(np.uint8), labels)
    # the camera PNG is the motion-blurred image: smoother than the clean render
    rgb = read("img", "rgb").astype(float)
    assert np.abs(np.diff(rgb, axis=1)).mean() < np.abs(np.diff(shot.frame.image.astype(float), axis=1)).mean()


def test_same_arguments_give_identical_files(deliver, tmp_path):
    out, options, _ = deliver
    again = tmp_path / "again"
    generate(WorldOptions(**{**options.__dict__, "out": again}))
    assert tree_digest(again) == tree_digest(out)


def test_corner_cases_go_to_token_folders(tmp_path):
    options = WorldOptions(out=tmp_path, frames=4, seed=2, conditions=("fog",), sequence_frames=1, corner_fraction=1.0, **SMALL)
    generate(options)
    folders = {p.name for p in tmp_path.glob("img/fog/train/*")}
    tokens = ("motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres")
    assert len(folders) == 4 and all(any(f.endswith("_" + t) for t in tokens) for f in folders)


# --- bags -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / "drive"
    failures = "camera:blackout@0.2-0.4s,lidar:silent@0.3-0.65s,depth:stamp_delay(ms=100)@0.5-0.8s,events:stamp_jump(ms=300)@0.6-0.75s"
    options = WorldOptions(out=out, format="bag", frames=20, seed=3, conditions=("sun",), failures=tuple(parse_failure_spec(failures)), **SMALL)
    generate(options)
    messages = {}
    with AnyReader([out]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, log_ns, raw in reader.messages():
            messages.setdefault(conn.topic, []).append((log_ns, reader.deserialize(raw, conn.msgtype)))
    return out, types, messages


def stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_bag_topics_types_and_rates(bag):
    out, types, messages = bag
    assert types == {topic: msgtype for topic, (msgtype, _) in TOPICS.items()}
    counts = {topic: len(m) for topic, m in messages.items()}
    assert counts["/camera/image"] == counts["/ground_truth/labels"] == counts["/events/points"] == 20
    assert counts["/tf_static"] == 1 and counts["/ground_truth/lidar_points"] == 10
    info = messages["/camera/camera_info"][0][1]
    image = messages["/camera/image"][0][1]
    assert (info.width, info.height, image.width, image.height, image.encoding) == (96, 48, 96, 48, "rgb8")
    assert info.k[0] == pytest.approx(48.0) and info.header.frame_id == image.header.frame_id == "camera_optical"
    frames = {t.child_frame_id for t in messages["/tf_static"][0][1].transforms}
    assert frames == {"camera_optical", "depth_optical", "lidar", "events_optical"}
    depth = messages["/depth/image"][0][1]
    assert depth.encoding == "32FC1" and depth.step == 96 * 4
    sidecar = yaml.safe_load((out / "world.yaml").read_text())
    assert sidecar["seed"] == 3 and sidecar["failures"].startswith("camera:blackout@0.2-0.4s")


def test_bag_stamps_follow_each_sensor_clock(bag):
    _, _, messages = bag
    cam = np.array([stamp(m) for _, m in messages["/camera/image"]]) - START
    lidar = np.array([stamp(m) for _, m in messages["/ground_truth/lidar_points"]]) - START
    depth = np.array([stamp(m) for _, m in messages["/depth/image"]]) - START
    clocks = DEFAULT_CLOCKS
    assert np.allclose(np.diff(cam), 50e6, atol=1e6)  # 20 Hz
    assert np.allclose(np.diff(lidar), 100e6, atol=1e6) and abs(lidar[0] - 1e9 * (clocks[Modality.LIDAR].phase_s + clocks[Modality.LIDAR].offset_s)) < 1e6
    assert abs(np.median(depth[:10] - cam[:10]) - 1e9 * clocks[Modality.DEPTH].offset_s) < 1e6  # own clock offset
    delayed = [(log, s) for log, s in zip([log for log, _ in messages["/depth/image"]], depth) if 0.5e9 <= log - START - 15e6 < 0.8e9]
    assert delayed and all(s - (log - START - 15e6) > 95e6 for log, s in delayed)  # scheduled stamp delay
    logs = [log for topic in messages for log, _ in messages[topic]]
    assert min(logs) == START


def test_silent_sensor_has_no_messages_and_blackout_is_black(bag):
    _, _, messages = bag
    lidar_times = [stamp(m) - START for _, m in messages["/lidar/points"]]
    assert len(lidar_times) == 6 and not any(0.3e9 <= t < 0.65e9 for t in lidar_times)
    for _, msg in messages["/camera/image"]:
        t = stamp(msg) - START
        pixels = np.asarray(msg.data)
        if 0.21e9 <= t < 0.39e9:
            assert pixels.max() == 0
        elif t < 0.19e9 or t > 0.41e9:
            assert pixels.mean() > 20


def test_event_cloud_layout_and_times(bag):
    _, _, messages = bag
    _, msg = messages["/events/points"][5]
    assert [(f.name, f.offset) for f in msg.fields] == [(n, o) for n, o, _, _ in EVENT_FIELDS] and msg.point_step == EVENT_STEP
    events = np.frombuffer(bytes(msg.data), cloud_dtype(EVENT_FIELDS, EVENT_STEP))
    assert len(events) == msg.width > 0
    rel = events["t"] - stamp(msg)
    assert rel.min() >= -50_000_000 and rel.max() <= 0 and set(np.unique(events["polarity"])) <= {-1, 1}
    assert events["x"].max() < 96 and events["y"].max() < 48


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--conditions", "sun,snow"], "unknown condition 'snow'"),
        (["--failures", "camera:blackout@6-3s"], "camera:blackout@6-3s"),
        (["--failures", "lidar:explode@1-2s"], "unknown kind 'explode'"),
        (["--split", "holdout"], "unknown split 'holdout'"),
        (["--format", "bag", "--conditions", "sun,night"], "a bag records one condition"),
        (["--frames", "0"], "--frames must be positive"),
        (["--failures", "no_such_schedule.yaml"], "cannot read failure schedule no_such_schedule.yaml"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path, args, fragment):
    result = modseg("world", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 1, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_fails_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = modseg("world", "--out", str(blocker / "data"), "--frames", "1")
    assert result.returncode == 1 and "--out" in result.stderr and "Traceback" not in result.stderr


def test_command_writes_a_small_dataset(tmp_path):
    result = modseg("world", "--out", str(tmp_path), "--frames", "2", "--conditions", "rain", "--width", "64", "--height", "32",
                    "--lidar-beams", "8", "--lidar-azimuths", "128", "--corner-fraction", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 2 frames" in result.stdout
    assert len(list(tmp_path.glob("semantic/rain/train/*/*_semantic_front.png"))) == 2
    again = modseg("world", "--out", str(tmp_path), "--frames", "2", "--conditions", "rain", "--width", "64", "--height", "32")
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_same_arguments_give_identical_bags(tmp_path):
    for name in ("a", "b"):
        generate(WorldOptions(out=tmp_path / name / "drive", format="bag", frames=3, seed=1, conditions=("night",), **SMALL))
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_backward_stamp_jump(bag):
    _, _, messages = bag
    stamps = np.array([stamp(m) for _, m in messages["/events/points"]]) - START
    steps = np.diff(stamps)
    assert (steps < -200e6).sum() == 1 and (steps > 300e6).sum() == 1  # back at 0.6 s, forward again at 0.75 s
    jumped = stamps[(stamps > 0.25e9) & (stamps < 0.5e9)]
    assert len(jumped) >= 3


def test_depth_in_millimetres_and_low_resolution_events(tmp_path):
    common = dict(format="bag", frames=3, seed=6, conditions=("cloud",), **SMALL)
    generate(WorldOptions(out=tmp_path / "m", **common))
    generate(WorldOptions(out=tmp_path / "mm", depth_encoding="16UC1",
                          failures=tuple(parse_failure_spec("events:lowres(factor=4)")), **common))  # fmt: skip
    read = {}
    for name in ("m", "mm"):
        with AnyReader([tmp_path / name]) as reader:
            read[name] = {c.topic: [reader.deserialize(raw, c.msgtype) for _, _, raw in reader.messages(connections=[c])]
                          for c in reader.connections}  # fmt: skip
    metres = np.frombuffer(bytes(read["m"]["/depth/image"][1].data), "<f4").reshape(48, 96)
    mm_msg = read["mm"]["/depth/image"][1]
    assert mm_msg.encoding == "16UC1" and mm_msg.step == 96 * 2
    mm = np.frombuffer(bytes(mm_msg.data), "<u2").reshape(48, 96)
    expected = np.where(np.isfinite(metres), np.rint(metres * 1000), 0)
    assert np.array_equal(mm, np.where(expected <= 65535, expected, 0).astype(np.uint16))
    events = np.frombuffer(bytes(read["mm"]["/events/points"][1].data), cloud_dtype(EVENT_FIELDS, EVENT_STEP))
    assert len(events) and np.all(events["x"] % 4 == 2) and np.all(events["y"] % 4 == 2)  # block centres on the full grid
    image = read["mm"]["/events/image"][1]
    assert (image.width, image.height) == (24, 12)  # the low-resolution sensor's own frame


def test_lidar_ground_truth_matches_the_scan(bag):
    from modseg_ros.data.world.bag_writer import LABEL_FIELDS, LABEL_STEP, LIDAR_FIELDS, LIDAR_STEP

    _, _, messages = bag
    truth = {stamp(m): m for _, m in messages["/ground_truth/lidar_points"]}
    assert len(messages["/lidar/points"]) == 6
    for _, msg in messages["/lidar/points"]:
        points = np.frombuffer(bytes(msg.data), cloud_dtype(LIDAR_FIELDS, LIDAR_STEP))
        labels = np.frombuffer(bytes(truth[stamp(msg)].data), cloud_dtype(LABEL_FIELDS, LABEL_STEP))
        assert len(points) == len(labels) > 1000
        assert all(np.array_equal(points[a], labels[a]) for a in "xyz")
        assert set(np.unique(labels["label"]).tolist()) <= set(range(len(CLASSES)))


def test_sequence_names_select_no_deliver_case_by_accident(tmp_path):
    """DELIVER's loader picks conditions and corner cases by substring of the path."""
    cases = ("cloud", "fog", "night", "rain", "sun", "motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres")
    for split in ("train", "val", "test"):
        for plan in plan_deliver(WorldOptions(out=tmp_path, frames=60, sequence_frames=2, split=split, corner_fraction=0.0)):
            assert not any(case in plan.name for case in cases), plan.name
