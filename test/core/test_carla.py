"""The CARLA preset: tag and colour mappings to DELIVER, config/carla.yaml, and a world drive written
as the carla-ros-bridge publishes it, replayed through the node (offline and live) and scored."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from replay_fixtures import SMALL, modseg

from modseg_ros.core import messages
from modseg_ros.core.carla import (
    CARLA_0_9_13,
    CARLA_0_9_14,
    TAG_SETS,
    cityscapes_from_labels,
    labels_from_cityscapes,
    labels_from_tags,
    tags_from_labels,
)
from modseg_ros.core.config import NodeConfig, default_parameters, load_parameters
from modseg_ros.core.palette import CLASS_ID, CLASSES, IGNORE, PALETTE
from modseg_ros.core.types import EventTime, Modality
from modseg_ros.data.bags import Bag, BagMessage
from modseg_ros.data.failures import parse_failure_spec
from modseg_ros.data.playback import MessageInjector, topic_roles
from modseg_ros.data.world.generate import WorldOptions, generate
from modseg_ros.errors import ConfigError
from modseg_ros.eval.offline import node_topic_roles, run_offline
from modseg_ros.eval.render_recording import render_recording
from modseg_ros.eval.replay_eval import replay_eval
from modseg_ros.eval.run import ReplayOptions
from modseg_ros.paths import config_file

ALL_IDS = np.arange(len(CLASSES), dtype=np.uint8)
VEHICLES_ONLY_LATER = ("TwoWheeler", "Bus", "Truck")  # CARLA <= 0.9.13 tags these Vehicles


# --- mappings ------------------------------------------------------------------------------------------


def test_deliver_is_carla_0_9_13_tags_minus_one_with_the_same_colours():
    for tag in range(1, 23):
        assert CARLA_0_9_13.tag_to_deliver[tag] == tag - 1
        assert CARLA_0_9_13.names[tag] in (CLASSES[tag - 1], "Vehicles", "GuardRail")
        assert tuple(PALETTE[tag - 1]) == CARLA_0_9_13.colors[tag]
    assert CARLA_0_9_13.tag_to_deliver[0] == IGNORE and CARLA_0_9_13.tag_to_deliver[23] == IGNORE


def test_carla_0_9_14_tags_map_by_meaning():
    lut = CARLA_0_9_14.tag_to_deliver
    expect = {1: "Road", 2: "SideWalk", 3: "Building", 4: "Wall", 5: "Fence", 10: "Terrain", 11: "Sky", 13: "TwoWheeler",
              14: "Cars", 15: "Truck", 16: "Bus", 17: "Cars", 18: "TwoWheeler", 19: "TwoWheeler", 24: "RoadLine",
              28: "GroundRail"}  # fmt: skip
    for tag, name in expect.items():
        assert lut[tag] == CLASS_ID[name], CARLA_0_9_14.names[tag]
    assert lut[0] == IGNORE and lut[29] == IGNORE  # unlabelled; a tag this numbering does not know (e.g. Rock)
    # every DELIVER class has a 0.9.14 tag, and every tag but Unlabeled a DELIVER class
    assert set(lut[1:29]) == set(range(len(CLASSES)))


@pytest.mark.parametrize("tag_set", list(TAG_SETS.values()), ids=list(TAG_SETS))
def test_labels_survive_the_semantic_camera_as_tags_and_as_cityscapes_colours(tag_set):
    labels = np.concatenate([ALL_IDS, [IGNORE]]).reshape(2, 13)
    expected = labels.copy()
    if tag_set is CARLA_0_9_13:
        expected[np.isin(labels, [CLASS_ID[n] for n in VEHICLES_ONLY_LATER])] = CLASS_ID["Cars"]
    tags = tags_from_labels(labels, tag_set)
    assert tags[-1, -1] == 0  # ignore is Unlabeled
    assert np.array_equal(labels_from_tags(tags, tag_set), expected)
    rgb = cityscapes_from_labels(labels, tag_set)
    assert np.array_equal(labels_from_cityscapes(rgb, tag_set), expected)
    rgb[0, 0] = (1, 2, 3)  # no tag's colour
    assert labels_from_cityscapes(rgb, tag_set)[0, 0] == IGNORE


# --- config/carla.yaml ---------------------------------------------------------------------------------


def test_carla_preset_is_a_complete_valid_parameter_file():
    carla = load_parameters(config_file("carla.yaml"))
    assert set(carla) == set(default_parameters())  # every key, so it reads on its own
    config = NodeConfig.load(config_file("carla.yaml"))
    assert config.topics.camera == "/carla/ego_vehicle/rgb_front/image"
    assert config.topics.sensor(Modality.EVENTS, "points") == "/carla/ego_vehicle/dvs_front/events"
    assert config.ground_truth.encoding == "carla_cityscapes" and config.inputs.event_time is EventTime.AUTO
    assert config.rig.frame_ids[Modality.LIDAR] == "ego_vehicle/lidar" and config.health.streams[Modality.LIDAR].rate_hz == 20
    # the rig agrees with config/carla_objects.json: rgb_front 2 m ahead and 2 m up, looking forward
    ahead = config.rig.base_from[Modality.CAMERA].apply(np.array([[0.0, 0.0, 10.0]]))
    assert np.allclose(ahead, [[12.0, 0.0, 2.0]], atol=1e-6)


@pytest.mark.parametrize("value", ["", "camera//image", "2d/image", "camera/image/", "cam era"])
def test_invalid_topic_parameters_are_named(value):
    with pytest.raises(ConfigError, match="parameter 'topics.lidar' is not a valid ROS topic name"):
        NodeConfig.from_parameters({"topics.lidar": value})


def test_unknown_event_time_and_tag_numbering_are_refused():
    with pytest.raises(ConfigError, match="inputs.event_time' must be one of auto, int64_ns, float_ns, float_s"):
        NodeConfig.from_parameters({"inputs.event_time": "microseconds"})
    with pytest.raises(ConfigError, match="ground_truth.carla_tags' must be one of 0.9.13, 0.9.14"):
        NodeConfig.from_parameters({"ground_truth.carla_tags": "0.9.15"})


# --- a drive as the carla-ros-bridge publishes it ----------------------------------------------------------


def carla_params(path: Path, **ground_truth) -> Path:
    """config/carla.yaml at the tests' 64×32 grid with one inference thread."""
    document = yaml.safe_load(config_file("carla.yaml").read_text())
    params = document["/**"]["ros__parameters"]
    params["rig"]["camera"].update(width=64, height=32)
    params["model"]["threads"] = 1
    params["ground_truth"].update(ground_truth)
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def carla_bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("carla") / "drive"
    generate(WorldOptions(out=out, format="bag", frames=16, seed=3, conditions=("night",), topic_preset="carla", **SMALL))
    return out


def test_the_world_writes_the_bridges_topics_and_layouts(carla_bag):
    config = NodeConfig.load(config_file("carla.yaml"))
    with Bag(carla_bag) as bag:
        assert {config.topics.camera, config.topics.depth, config.topics.lidar, config.topics.events,
                config.ground_truth.topic} <= set(bag.topics)  # fmt: skip
        assert "/ground_truth/labels" not in bag.topics and bag.sidecar["topic_preset"] == "carla"

        def first(topic):
            return bag.deserialize(next(bag.messages([topic])))

        camera = first(config.topics.camera)
        assert (camera.encoding, camera.header.frame_id) == ("bgra8", "ego_vehicle/rgb_front")
        assert first(config.topics.depth).encoding == "32FC1"
        lidar = first(config.topics.lidar)
        assert [f.name for f in lidar.fields] == ["x", "y", "z", "intensity"] and lidar.point_step == 16
        events = first(config.topics.events)
        assert [(f.name, f.offset, f.datatype) for f in events.fields] == [("x", 0, 4), ("y", 2, 4), ("t", 4, 8), ("pol", 12, 1)]
        t = messages.cloud_array(events, "e").reshape(-1)["t"]
        stamp = messages.stamp_ns(events.header)
        assert stamp < 10**11  # simulation time, seconds into the episode
        assert np.all(np.abs(t - stamp) < 1e8)  # a double holding nanoseconds, as the bridge packs it
        assert messages.resolve_event_time(t, stamp) is EventTime.FLOAT_NS
        semantic = first(config.ground_truth.topic)
        assert semantic.encoding == "bgra8"
        colours = messages.camera_frame(semantic, "s").image.reshape(-1, 3)
        known = {tuple(c) for c in CARLA_0_9_13.colors}
        assert {tuple(c) for c in np.unique(colours, axis=0)} <= known


def test_injected_event_failures_keep_the_bridges_layout(carla_bag):
    config = NodeConfig.load(config_file("carla.yaml"))
    topic = config.topics.events
    with Bag(carla_bag) as bag:
        injector = MessageInjector(bag, parse_failure_spec("events:burst"), 0, topic_roles([topic], node_topic_roles(config)))
        message = next(bag.messages([topic]))
        raw = injector.process(message)
        assert raw != message.raw  # rewritten with the burst
        msg = bag.deserialize(BagMessage(topic, message.msgtype, message.log_ns, raw))
        assert [f.name for f in msg.fields] == ["x", "y", "t", "pol"]
        t = messages.cloud_array(msg, topic).reshape(-1)["t"]
        assert messages.resolve_event_time(t, messages.stamp_ns(msg.header)) is EventTime.FLOAT_NS
        forced = messages.event_packet(msg, topic, 64, 32, EventTime.FLOAT_NS)
        assert len(forced.t_ns) > 64 * 32 // 2 and np.all(np.abs(forced.t_ns) < 1e8)


@pytest.mark.parametrize("encoding", ["carla_cityscapes", "carla_tags"])
def test_carla_drive_through_the_node_offline_gives_masks_and_a_scored_report(carla_bag, tmp_path, encoding):
    bag = carla_bag
    if encoding == "carla_tags":  # the semantic camera's raw image instead (tag in the red channel), 0.9.14 numbering
        bag = tmp_path / "raw_tags"
        params_file = carla_params(tmp_path / "carla.yaml", encoding=encoding, carla_tags="0.9.14")
        generate(WorldOptions(out=bag, format="bag", frames=16, seed=3, conditions=("night",), topic_preset="carla",
                              parameters=params_file, **SMALL))  # fmt: skip
    params = carla_params(tmp_path / "carla.yaml", encoding=encoding, carla_tags="0.9.14" if encoding == "carla_tags" else "0.9.13")
    options = ReplayOptions(params=params, failures=tuple(parse_failure_spec("camera:blackout@0.3-0.5s")))
    report = replay_eval([bag], tmp_path / "report", options, run_offline, panels=2)
    summary = report["bags"][0]
    assert summary["frames_offered"] == 16 and summary["frames_with_mask"] >= 14
    assert summary["ground_truth"] and summary["miou"] is not None and summary["miou"] > 0
    assert summary["condition"] == "night"
    # all four CARLA sensors fused; the injected blackout on the CARLA camera topic is its own phase
    assert "CDLE" in summary["per_modalities"] and "camera:blackout" in summary["per_phase"]
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / bag.name / "panels.png").is_file()


def test_carla_drive_through_the_live_node_recorded_for_foxglove_and_rviz(carla_bag, tmp_path):
    """``modseg replay-eval --record`` on the CARLA drive: the live node's report, and a recording with
    the inputs as published and every output, decodable from its own embedded definitions."""
    params = carla_params(tmp_path / "carla.yaml")
    out = tmp_path / "report"
    result = modseg("replay-eval", str(carla_bag), "--params", str(params), "--out", str(out), "--rate", "0.5", "--record")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "live" and report["bags"][0]["frames_with_mask"] >= 8 and report["bags"][0]["miou"] is not None
    recording = out / "recording" / carla_bag.name
    config = NodeConfig.load(params)
    with Bag(recording) as rec, Bag(carla_bag) as source:
        types = {t: i.msgtype for t, i in rec.topics.items()}
        outputs = {"/segmentation/mask": "sensor_msgs/msg/Image", "/segmentation/color_mask": "sensor_msgs/msg/Image",
                   "/segmentation/overlay": "sensor_msgs/msg/Image", "/segmentation/points": "sensor_msgs/msg/PointCloud2",
                   "/segmentation/info": "modseg_ros/msg/SegmentationInfo", "/sensor_health": "modseg_ros/msg/SensorHealthArray",
                   "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}  # fmt: skip
        inputs = {config.topics.camera, config.topics.camera_info, config.topics.depth, config.topics.lidar, config.topics.events}
        assert outputs.items() <= types.items() and inputs <= set(types)
        assert {"/tf_static", "/tf", config.ground_truth.topic} <= set(types)
        # the inputs are the bag's messages, byte for byte (nothing was injected)
        assert [m.raw for m in rec.messages([config.topics.lidar])] == [m.raw for m in source.messages([config.topics.lidar])]
        masks = rec.topics["/segmentation/mask"].count
        assert masks == report["bags"][0]["masks_published"] == rec.topics["/segmentation/info"].count
        info = rec.deserialize(next(rec.messages(["/segmentation/info"])))  # modseg_ros/msg from the embedded schema
        assert info.model == report["model"] and info.header.frame_id == "ego_vehicle/rgb_front"
    # the MCAP file carries ros2msg schemas with the package's own definitions, as Foxglove needs them
    data = next(recording.glob("*.mcap")).read_bytes()
    assert b"ros2msg" in data and b"MSG: modseg_ros/SensorHealth" in data
    # the same bundle gives the same mask live and offline
    offline = {(m.stamp_ns, tuple(sorted(m.modality_stamps.items()))): m.labels for m in run_offline(carla_bag, ReplayOptions(params=params)).masks}
    with Bag(recording) as rec:
        infos = [rec.deserialize(m) for m in rec.messages(["/segmentation/info"])]
        masks = [rec.deserialize(m) for m in rec.messages(["/segmentation/mask"])]
        live = {messages.stamp_ns(m.header): m for m in masks}
    same = 0
    for info in infos:
        stamp = messages.stamp_ns(info.header)
        key = (stamp, tuple(sorted((Modality.parse(n), t.sec * 1_000_000_000 + t.nanosec) for n, t in zip(info.modalities_used, info.modality_stamps))))
        if key in offline and stamp in live:
            assert np.array_equal(messages.image_array(live[stamp], "mask"), offline[key])
            same += 1
    assert same >= 4
    pictures = render_recording(recording, tmp_path / "frames", frames=2, params=params)
    assert len(pictures) == 2 and all(p.stat().st_size > 10_000 for p in pictures)
