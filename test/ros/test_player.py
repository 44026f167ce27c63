"""``modseg play``: recorded timing and /clock over real DDS, failure injection with the world's
spec and appliers, bags from other tools (sqlite3, unknown types) and broken bags."""
from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from replay_fixtures import Listener, modseg, small_world_bag
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from modseg_ros.core import messages
from modseg_ros.core.types import CameraFrame, Modality
from modseg_ros.data.bags import Bag
from modseg_ros.data.failures import FailureInjector, apply_to_payload, parse_failure_spec
from modseg_ros.data.playback import CLOCK_TOPIC, MessageInjector, PlaybackOptions, header_stamp, schedule, topic_roles
from modseg_ros.data.world.bag_writer import cloud_dtype
from modseg_ros.errors import BagError

NS = 1_000_000_000


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return small_world_bag(tmp_path_factory.mktemp("player") / "drive", frames=30)


def played(bag_path, failures: str, seed: int = 0, **options):
    """Everything the player would publish (topic -> [(log ns, raw)]), without DDS."""
    with Bag(bag_path) as b:
        topics = list(b.topics)
        opts = PlaybackOptions(failures=tuple(parse_failure_spec(failures)), seed=seed, **options)
        injector = MessageInjector(b, opts.failures, seed, topic_roles(topics))
        out = {}
        for item in schedule(b, topics, opts, injector):
            out.setdefault(item.topic, []).append((item.bag_ns, item.raw))
        return out, b.origin_ns


def recorded(bag_path):
    with Bag(bag_path) as b:
        out = {}
        for m in b.messages():
            out.setdefault(m.topic, []).append((m.log_ns, m.raw))
        return out, b


KILTED = get_typestore(Stores.ROS2_KILTED)


def image(raw):
    msg = KILTED.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    return np.array(messages.image_array(msg, "test"))


# --- timing and /clock over DDS ------------------------------------------------------------------------


def test_recorded_timing_clock_and_injected_gaps_over_dds(bag):
    listener = Listener({"/camera/image": "sensor_msgs/msg/Image", "/lidar/points": "sensor_msgs/msg/PointCloud2",
                         CLOCK_TOPIC: "rosgraph_msgs/msg/Clock"})  # fmt: skip
    try:
        result = modseg("play", str(bag), "--topics", "/camera/image", "/lidar/points", "--clock", "100", "--wait-for-subscribers", "30",
                        "--delay", "0.3", "--fail", "lidar:silent@0.4-0.9s,camera:blackout@0.2-0.5s")  # fmt: skip
        assert result.returncode == 0, result.stderr
        listener.settle()
        camera = listener.recorder.messages("/camera/image")
        lidar = listener.recorder.messages("/lidar/points")
        clock = listener.recorder.messages(CLOCK_TOPIC)
    finally:
        listener.close()
    expected, origin = recorded(bag)[0], Bag(bag).origin_ns
    logs = {header_stamp(raw): log for log, raw in expected["/camera/image"]}
    assert len(camera) == len(expected["/camera/image"]) == 30  # best effort, but nothing lost on loopback
    # each message leaves at its recorded log time: receipt times follow the log times
    stamps = [header_stamp(r.raw) for r in camera]
    log_s = np.array([logs[s] for s in stamps]) / 1e9
    wall = np.array([r.wall for r in camera])
    error = (wall - wall[0]) - (log_s - log_s[0])
    assert np.median(np.abs(error)) < 0.010 and np.abs(error).max() < 0.080, error
    # /clock: one tick per 10 ms of bag time from the first message, carrying the bag time, paced like the messages
    values = np.array([_clock(r).sec * NS + _clock(r).nanosec for r in clock])
    assert values[0] == origin and np.all(np.diff(values) == 10_000_000)
    assert len(values) == math.floor((Bag(bag).end_ns - origin) / 10_000_000) + 1
    clock_error = (np.array([r.wall for r in clock]) - clock[0].wall) - (values - values[0]) / 1e9
    assert np.median(np.abs(clock_error)) < 0.010
    # the injected failures: no LiDAR scan logged in [0.4, 0.9) s, black frames in [0.2, 0.5) s
    lidar_t = [(log - origin) / 1e9 for log in _log_times(expected["/lidar/points"], lidar)]
    assert lidar_t == [(log - origin) / 1e9 for log, _ in expected["/lidar/points"] if not 0.4 <= (log - origin) / 1e9 < 0.9]
    for r in camera:
        t = (logs[header_stamp(r.raw)] - origin) / 1e9
        assert (image(r.raw).max() == 0) == (0.2 <= t < 0.5)


def _clock(record):
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock

    return deserialize_message(record.raw, Clock).clock


def _log_times(expected, received):
    logs = {header_stamp(raw): log for log, raw in expected}
    return [logs[header_stamp(r.raw)] for r in received]


def test_rate_start_and_duration_select_and_scale_the_window(bag):
    listener = Listener({"/depth/image": "sensor_msgs/msg/Image"})
    try:
        result = modseg("play", str(bag), "--topics", "/depth/image", "--rate", "2", "--start", "0.5", "--duration", "0.5",
                        "--wait-for-subscribers", "30", "--delay", "0.3")  # fmt: skip
        assert result.returncode == 0, result.stderr
        listener.settle()
        depth = listener.recorder.messages("/depth/image")
    finally:
        listener.close()
    expected, b = recorded(bag)
    window = [(log, raw) for log, raw in expected["/depth/image"] if b.start_ns + 0.5e9 <= log < b.start_ns + 1.0e9]
    assert [header_stamp(r.raw) for r in depth] == [header_stamp(raw) for _, raw in window]
    assert all(r.raw == raw for r, (_, raw) in zip(depth, window))  # untouched: the recorded bytes
    wall = np.array([r.wall for r in depth])
    logs = np.array([log for log, _ in window]) / 1e9
    assert np.median(np.abs((wall - wall[0]) - (logs - logs[0]) / 2.0)) < 0.010  # twice as fast
    assert "played 10 messages on 1 topics" in result.stdout


# --- failure injection: exactly the scheduled gaps and corruptions -----------------------------------------


def test_injection_changes_exactly_the_scheduled_messages(bag):
    spec = ("lidar:silent@0.4-0.9s,camera:blackout@0.2-0.5s,depth:stamp_delay(ms=100)@0.5-1s,"
            "camera:frozen@1-1.3s,events:burst(density=0.2)@0.1-0.3s")  # fmt: skip
    out, origin = played(bag, spec)
    original, _ = recorded(bag)
    t = lambda log: (log - origin) / NS  # noqa: E731
    # silent: exactly the scans logged in the window are missing, every other one is byte-identical
    assert out["/lidar/points"] == [(log, raw) for log, raw in original["/lidar/points"] if not 0.4 <= t(log) < 0.9]
    # blackout: black inside, the recorded bytes outside; frozen repeats the last frame before 1 s with new stamps
    before_freeze = [raw for log, raw in original["/camera/image"] if t(log) < 1.0][-1]
    for (log, raw), (_, source) in zip(out["/camera/image"], original["/camera/image"]):
        if 0.2 <= t(log) < 0.5:
            assert image(raw).max() == 0 and header_stamp(raw) == header_stamp(source)
        elif 1.0 <= t(log) < 1.3:
            assert np.array_equal(image(raw), image(before_freeze)) and header_stamp(raw) == header_stamp(source)
        else:
            assert raw == source
    # stamp delay: +100 ms exactly, content untouched
    for (log, raw), (_, source) in zip(out["/depth/image"], original["/depth/image"]):
        shift = header_stamp(raw) - header_stamp(source)
        assert shift == (100_000_000 if 0.5 <= t(log) < 1.0 else 0) and raw[12:] == source[12:]
    # noise burst: more events in the window, identical packets outside
    events = lambda raw: KILTED.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2").width  # noqa: E731
    for (log, raw), (_, source) in zip(out["/events/points"], original["/events/points"]):
        if 0.1 <= t(log) < 0.3:
            assert events(raw) > events(source) + 0.2 * 64 * 32 * 0.5
        else:
            assert raw == source
    # topics no failure names pass untouched
    assert out["/ground_truth/lidar_points"] == original["/ground_truth/lidar_points"]


def test_injection_uses_the_worlds_appliers_and_ground_truth_follows_stamps(bag):
    spec = "camera:underexposure@0.3-0.6s,camera:stamp_jitter(ms=20)@0-2s"
    failures = parse_failure_spec(spec)
    out, origin = played(bag, spec, seed=7)
    original, _ = recorded(bag)
    rng = FailureInjector(failures, seed=7).rng
    for (log, raw), (_, source) in zip(out["/camera/image"], original["/camera/image"]):
        t = (log - origin) / NS
        if 0.3 <= t < 0.6:  # the same applier with the same generator as FailureInjector.process
            generator = rng(Modality.CAMERA, t)
            expected = apply_to_payload(failures[0], CameraFrame(image(source)), generator).image
            assert np.array_equal(image(raw), expected)
    # camera_info and labels keep the camera's (jittered) stamps, so every label still matches its frame
    labels = [header_stamp(raw) for _, raw in out["/ground_truth/labels"]]
    frames = [header_stamp(raw) for _, raw in out["/camera/image"]]
    infos = [header_stamp(raw) for _, raw in out["/camera/camera_info"]]
    assert labels == frames == infos and labels != [header_stamp(raw) for _, raw in original["/camera/image"]]
    # the same seed gives the same bytes
    assert played(bag, spec, seed=7)[0] == out


def test_lidar_blockage_removes_the_sector(bag):
    out, _ = played(bag, "lidar:blockage(from=-45,to=45)@0-5s")
    original, _ = recorded(bag)
    for (_, raw), (_, source) in zip(out["/lidar/points"], original["/lidar/points"]):
        msg = KILTED.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2")
        points = np.frombuffer(bytes(msg.data), cloud_dtype([(f.name, f.offset, f.datatype, _np(f.datatype)) for f in msg.fields], msg.point_step))
        azimuth = np.degrees(np.arctan2(points["y"], points["x"]))
        full = KILTED.deserialize_cdr(source, "sensor_msgs/msg/PointCloud2").width
        assert 0 < len(points) < full and not np.any(np.abs(azimuth) <= 45.0)


@pytest.mark.parametrize("sidecar", [True, False])
def test_event_lowres_keeps_the_sensor_grid(bag, tmp_path, sidecar):
    """Low-resolution events land on the centres of their blocks of the nominal grid (from the world's
    sidecar, or without one from the coordinates of the packet)."""
    source = bag
    if not sidecar:
        source = tmp_path / "no_sidecar"
        shutil.copytree(bag, source)
        (source / "world.yaml").unlink()
    out, _ = played(source, "events:lowres(factor=4)@0-5s")
    for _, raw in out["/events/points"]:
        msg = KILTED.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2")
        events = np.frombuffer(bytes(msg.data), cloud_dtype([(f.name, f.offset, f.datatype, _np(f.datatype)) for f in msg.fields], msg.point_step))
        if len(events):
            assert events["x"].max() < 64 and events["y"].max() < 32
            assert set(np.unique(events["x"] % 4)) == {2} and set(np.unique(events["y"] % 4)) == {2}


def _np(datatype: int) -> str:
    return {1: "<i1", 2: "<u1", 4: "<u2", 7: "<f4", 8: "<f8"}[datatype]


# --- bags from other tools, broken bags -----------------------------------------------------------------------


FOO = "std_msgs/Header header\nfloat32 value\n"


def test_sqlite3_bag_with_an_unknown_type_plays_the_rest_with_one_warning(tmp_path):
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(FOO, "my_pkg/msg/Foo"))
    Image, Header, Time, Foo = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time", "my_pkg/msg/Foo"))
    path = tmp_path / "other_tools"
    start = 1_700_000_000 * NS
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        images = writer.add_connection("/front/image_raw", "sensor_msgs/msg/Image", typestore=store)
        custom = writer.add_connection("/custom", "my_pkg/msg/Foo", typestore=store)
        for i in range(10):
            header = Header(stamp=Time(sec=1_700_000_000, nanosec=i * 50_000_000), frame_id="cam")
            pixels = np.full((8, 8, 3), i * 20, np.uint8)
            writer.write(images, start + i * 50_000_000, store.serialize_cdr(Image(header=header, height=8, width=8, encoding="rgb8", is_bigendian=0, step=24, data=pixels.reshape(-1)), "sensor_msgs/msg/Image"))  # fmt: skip
            writer.write(custom, start + i * 50_000_000, store.serialize_cdr(Foo(header=header, value=float(i)), "my_pkg/msg/Foo"))
    listener = Listener({"/front/image_raw": "sensor_msgs/msg/Image"})
    try:
        result = modseg("play", str(path), "--wait-for-subscribers", "30", "--delay", "0.3", "--sensor-topic", "camera=/front/image_raw",
                        "--fail", "camera:blackout@0.2-5s")  # fmt: skip
        listener.settle()
        received = listener.recorder.messages("/front/image_raw")
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["modseg play: warning: skipping /custom: its type my_pkg/msg/Foo cannot be imported by rclpy here"]
    assert "Traceback" not in result.stderr and "played 10 messages on 1 topics" in result.stdout
    assert [image(r.raw).max() for r in received] == [0, 20, 40, 60] + [0] * 6  # blackout from 0.2 s on a custom topic name


def _truncate(path, fraction=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * fraction))


def _sqlite_bag(path):
    store = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        images = writer.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=store)
        for i in range(100):
            msg = Image(header=Header(stamp=Time(sec=1, nanosec=i), frame_id="cam"), height=64, width=64, encoding="rgb8",
                        is_bigendian=0, step=192, data=np.zeros(64 * 64 * 3, np.uint8))  # fmt: skip
            writer.write(images, NS + i * 10_000_000, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))


@pytest.mark.parametrize("kind", ["truncated mcap", "truncated sqlite3", "not a bag"])
def test_broken_bags_are_a_clear_error(bag, tmp_path, kind):
    if kind == "truncated mcap":
        broken = tmp_path / "truncated"
        shutil.copytree(bag, broken)
        _truncate(next(broken.glob("*.mcap")))
    elif kind == "truncated sqlite3":
        broken = tmp_path / "sqlite"
        _sqlite_bag(broken)
        _truncate(next(broken.glob("*.db3")))
    else:
        broken = tmp_path / "drive.mcap"
        broken.write_bytes(b"not an MCAP file " * 64)
    for args in (["play", str(broken)], ["replay-eval", str(broken), "--out", str(tmp_path / "report"), "--offline"]):
        result = modseg(*args)
        assert result.returncode == 1, result.stderr
        assert f"{broken}: cannot read the bag" in result.stderr and "Traceback" not in result.stderr, result.stderr
    with pytest.raises(BagError, match="truncated or not a rosbag2 bag"):
        Bag(broken)


def test_bad_arguments_name_what_is_wrong(bag, tmp_path):
    for args, fragment in (
        (["--topics", "/nope"], "--topics: /nope not in"),
        (["--rate", "0"], "--rate must be a positive number"),
        (["--start", "99"], "--start 99s is beyond the end"),
        (["--fail", "camera:explode@1-2s"], "unknown kind 'explode'"),
        (["--sensor-topic", "radar=/r"], "unknown modality 'radar'"),
    ):
        result = modseg("play", str(bag), *args)
        assert result.returncode == 1 and fragment in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    missing = modseg("play", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "no such bag" in missing.stderr


def test_ctrl_c_stops_a_looping_player(bag):
    # SIGINT at its default, whatever the suite inherited (a suite started in the background under
    # nohup or `cmd &` ignores it, and ignored signals pass on to children)
    proc = subprocess.Popen([sys.executable, "-m", "modseg_ros.cli", "play", str(bag), "--loop"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    time.sleep(4.0)
    proc.send_signal(2)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
