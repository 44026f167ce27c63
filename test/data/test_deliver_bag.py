"""``modseg convert deliver2bag``: DELIVER-layout frames written by the world, turned into a bag whose
messages the node encodes back into the PNGs (exactly where the PNG codes it, within measured
bounds where the node recomputes), replayed and scored."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from replay_fixtures import SMALL, modseg

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import EncodingConfig, decode_range, range_code
from modseg_ros.core.types import Modality
from modseg_ros.data.bags import Bag
from modseg_ros.data.deliver import DeliverDataset
from modseg_ros.data.deliver_bag import carla_depth_m, lidar_from_png
from modseg_ros.data.world.generate import WorldOptions, generate
from modseg_ros.eval.offline import encode_inputs, run_offline
from modseg_ros.eval.replay_eval import replay_eval
from modseg_ros.eval.run import ReplayOptions

C, D, L, E = Modality.CAMERA, Modality.DEPTH, Modality.LIDAR, Modality.EVENTS


@pytest.fixture(scope="module")
def deliver_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deliver")
    generate(WorldOptions(out=root, format="deliver", split="val", frames=8, sequence_frames=4, conditions=("night", "sun"),
                          corner_fraction=0.0, seed=11, **SMALL))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def bag(deliver_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "night_val"
    result = modseg("convert", "deliver2bag", str(deliver_root), "--split", "val", "--condition", "night", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 4 frames" in result.stdout and "depth: modseg, LiDAR: modseg" in result.stdout
    return out


def test_the_bag_carries_every_frame_at_its_rate_with_the_node_parameters_beside_it(bag):
    with Bag(bag) as b:
        assert set(b.topics) == {"/camera/image", "/camera/camera_info", "/depth/image", "/lidar/points", "/events/image",
                                 "/ground_truth/labels", "/tf_static"}  # fmt: skip
        assert all(b.topics[t].count == 4 for t in ("/camera/image", "/depth/image", "/lidar/points", "/events/image"))
        stamps = [f["stamp_ns"] for f in b.sidecar["frames"]]
        assert np.all(np.diff(stamps) == 50_000_000) and b.sidecar["condition"] == "night"
        assert all("/night/val/" in f["frame"] for f in b.sidecar["frames"])
    config = NodeConfig.load(bag / "any2seg.yaml")
    assert config.inputs.events_source == "image" and (config.rig.camera.width, config.rig.camera.height) == (64, 32)


def test_the_node_encodes_the_bag_back_into_the_pngs(bag, deliver_root):
    options = ReplayOptions(params=bag / "any2seg.yaml")
    with Bag(bag) as b:
        stamps = [f["stamp_ns"] for f in b.sidecar["frames"]]
        encoded = encode_inputs(b, options, NodeConfig.load(options.params), {(m, s) for s in stamps for m in Modality})
    dataset = DeliverDataset(deliver_root, "val", conditions=("night",))
    for k, stamp in enumerate(stamps):
        png = dataset[k].encodings
        node = {m: encoded[(m, stamp)].astype(int) for m in Modality}
        assert np.array_equal(node[C], png[C]) and np.array_equal(node[E], png[E])  # exact
        # depth: the range code is exact, the height from it within 2 codes; the surface channel is recomputed
        # from 8-bit depth (the approximation docs/integrations.md states)
        assert np.array_equal(node[D][..., 0], png[D][..., 0])
        assert np.abs(node[D][..., 1] - png[D][..., 1]).max() <= 2
        # LiDAR: the same pixels with the same range and intensity; heights from pixel centres
        assert np.array_equal(node[L][..., :2], png[L][..., :2])
        assert np.abs(node[L][..., 2] - png[L][..., 2]).max() <= 40


def test_the_converted_bag_replays_through_the_node_and_is_scored(bag, tmp_path):
    options = ReplayOptions(params=bag / "any2seg.yaml")
    report = replay_eval([bag], tmp_path / "report", options, run_offline, panels=1)
    summary = report["bags"][0]
    assert summary["frames_offered"] == 4 and summary["frames_with_mask"] == 4
    assert summary["miou"] is not None and summary["per_condition"].keys() == {"night"}
    # the first frame finds only the camera alive (the others have not spoken yet), then all four are fused
    assert summary["per_modalities"]["CDLE"]["frames"] >= 3 and summary["false_alarms"] == []


def test_carla_depth_and_linear_lidar_decoding():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [10, 2, 0]]], np.uint8)  # none, 1000 m, (10 + 512) / (2^24 - 1) km
    depth = carla_depth_m(rgb)
    assert np.isnan(depth[0, 0]) and depth[0, 1] == pytest.approx(1000.0)
    assert depth[0, 2] == pytest.approx(522 / (256**3 - 1) * 1000, rel=1e-6)
    from modseg_ros.core.config import rig_from_parameters, load_parameters
    from modseg_ros.paths import config_file

    rig = rig_from_parameters(load_parameters(config_file("any2seg.yaml")))
    png = np.zeros((rig.camera.height, rig.camera.width, 3), np.uint8)
    png[128, 256, 0] = 51  # straight ahead (the pixel right of the centre), 20 m at 100 m full scale
    cloud = lidar_from_png(png, "linear", rig, EncodingConfig(), 100.0)
    in_camera = rig.camera_from(Modality.LIDAR).apply(cloud.points)
    assert len(cloud.points) == 1 and in_camera[0, 2] == pytest.approx(20.0, rel=1e-5)
    # the world's code decodes to the centre of its step
    z = decode_range(np.array([range_code(np.array([20.0]), EncodingConfig())[0]]), EncodingConfig())
    assert z[0] == pytest.approx(20.0, rel=0.025)


def test_bad_arguments_name_what_is_wrong(deliver_root, tmp_path):
    result = modseg("convert", "deliver2bag", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"))
    assert result.returncode == 1 and "is not a DELIVER-layout folder" in result.stderr
    result = modseg("convert", "deliver2bag", str(deliver_root), "--out", str(tmp_path / "b"), "--depth-format", "hha")
    assert result.returncode == 1 and "--depth-format must be one of" in result.stderr
    result = modseg("convert", "deliver2bag", str(deliver_root), "--out", str(tmp_path / "b"), "--condition", "snow")
    assert result.returncode == 1 and "no frames in" in result.stderr
