"""Real labelled camera datasets (data/labelled.py), their camera-only evaluation (eval/labelled.py)
and mixed world + real training, on small CamVid-layout folders the tests write themselves."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from model_fixtures import world_root  # noqa: F401  (fixture)
from modseg_ros.core.network_input import aspect_size, normalise, scan_rank
from modseg_ros.core.palette import CLASS_ID, IGNORE, NUM_CLASSES
from modseg_ros.core.types import Modality
from modseg_ros.data.labelled import LabelledDataset, load_mapping
from modseg_ros.data.deliver import DeliverDataset
from modseg_ros.errors import ConfigError, DatasetError
from modseg_ros.eval.labelled import evaluate_labelled
from modseg_ros.model.checkpoint import load_checkpoint
from modseg_ros.model.training import TrainConfig, class_shares, enet_class_weights, train
from modseg_ros.paths import model_file

SKY, BUILDING, ROAD, CAR, VOID = 0, 1, 3, 8, 11


def street_label(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """CamVid ids: sky on top, buildings, road below, a car and some void."""
    label = np.full((h, w), BUILDING, np.uint8)
    label[: h // 4] = SKY
    label[h * 2 // 3 :] = ROAD
    x = int(rng.integers(0, w // 2))
    label[h // 2 : h * 5 // 6, x : x + w // 4] = CAR
    label[-2:, :3] = VOID
    return label


def street_image(label: np.ndarray) -> np.ndarray:
    colours = {SKY: (120, 160, 220), BUILDING: (90, 80, 70), ROAD: (110, 110, 115), CAR: (20, 30, 160), VOID: (0, 0, 0)}
    return np.stack([np.vectorize(lambda c, i=i: colours[int(c)][i])(label) for i in range(3)], -1).astype(np.uint8)


def write_camvid(root, splits=("train", "val", "test"), frames=3, shape=(60, 80)):
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(frames):
            label = street_label(*shape, rng)
            Image.fromarray(street_image(label)).save(root / split / f"f{i:03d}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i:03d}.png")
    return root


@pytest.fixture
def camvid(tmp_path):
    return write_camvid(tmp_path / "CamVid")


def test_camvid_frames_are_camera_only_with_deliver_training_ids(camvid):
    data = LabelledDataset(camvid, "camvid", "train")
    assert len(data) == 3
    frame = data[0]
    assert set(frame.encodings) == {Modality.CAMERA} and frame.encodings[Modality.CAMERA].shape == (60, 80, 3)
    raw = np.asarray(Image.open(camvid / "trainannot" / "f000.png"))
    assert (frame.label[raw == SKY] == CLASS_ID["Sky"]).all() and (frame.label[raw == CAR] == CLASS_ID["Cars"]).all()
    assert (frame.label[raw == VOID] == IGNORE).all()
    rgb, index = data.dataset_frame(0)
    assert (index[raw == ROAD] == ROAD).all() and (index[raw == VOID] == IGNORE).all()
    assert data.fingerprint() == LabelledDataset(camvid, "camvid", "train").fingerprint() != LabelledDataset(camvid, "camvid", "val").fingerprint()


def test_predictions_map_onto_the_dataset_classes_and_the_rest_counts_wrong():
    mapping = load_mapping("camvid")
    lut = mapping.prediction_lut()
    assert lut[CLASS_ID["RoadLine"]] == lut[CLASS_ID["Road"]] == ROAD
    assert lut[CLASS_ID["Truck"]] == lut[CLASS_ID["Bus"]] == CAR
    assert lut[CLASS_ID["Water"]] == lut[CLASS_ID["Other"]] == len(mapping.classes)  # no counterpart


def test_bad_datasets_are_refused_naming_the_file_and_value(tmp_path, camvid):
    (camvid / "trainannot" / "f001.png").unlink()
    with pytest.raises(DatasetError, match=r"f001.png: label file .*trainannot/f001.png is missing"):
        LabelledDataset(camvid, "camvid", "train")
    Image.fromarray(np.full((60, 80), 12, np.uint8)).save(camvid / "valannot" / "f000.png")
    with pytest.raises(DatasetError, match=r"valannot/f000.png: id 12 is neither a class nor ignored in camvid.yaml"):
        LabelledDataset(camvid, "camvid", "val")[0]
    Image.fromarray(np.zeros((30, 80), np.uint8)).save(camvid / "testannot" / "f002.png")
    with pytest.raises(DatasetError, match=r"test/f002.png is 80×60 but its label .*testannot/f002.png is 80×30"):
        LabelledDataset(camvid, "camvid", "test")[2]
    mapping = tmp_path / "mine.yaml"
    mapping.write_text('images: "{split}/*.png"\nlabels: [["{split}/", "{split}annot/"]]\nclasses:\n  0: {name: Sky, deliver: [Skies]}\n')
    with pytest.raises(DatasetError, match=r"mine.yaml: class 0 \(Sky\) maps onto unknown DELIVER class 'Skies'"):
        load_mapping(mapping)
    with pytest.raises(DatasetError, match="no images in"):
        LabelledDataset(tmp_path, "camvid", "train")


def test_a_cityscapes_style_layout_takes_two_folders_and_a_suffix(tmp_path):
    root = tmp_path / "city"
    (root / "leftImg8bit/val/aachen").mkdir(parents=True)
    (root / "gtFine/val/aachen").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(root / "leftImg8bit/val/aachen/a_1_leftImg8bit.png")
    Image.fromarray(np.full((32, 64), 7, np.uint8)).save(root / "gtFine/val/aachen/a_1_gtFine_labelIds.png")
    mapping = tmp_path / "cityscapes.yaml"
    mapping.write_text('name: Cityscapes\nimages: "leftImg8bit/{split}/*/*_leftImg8bit.png"\n'
                       'labels: [["leftImg8bit/", "gtFine/"], ["_leftImg8bit.png", "_gtFine_labelIds.png"]]\n'
                       'ignore: [0]\nclasses:\n  7: {name: road, deliver: [Road, RoadLine]}\n')  # fmt: skip
    frame = LabelledDataset(root, mapping, "val")[0]
    assert (frame.label == CLASS_ID["Road"]).all()


def test_aspect_size_keeps_the_shape_and_the_pixel_count():
    assert aspect_size((360, 480), 256 * 320) == (256, 352)
    assert aspect_size((1080, 1920), 128 * 256) == (128, 224)


def test_scan_rank_ignores_the_sensor_scale():
    rng = np.random.default_rng(1)
    lidar = np.zeros((16, 32, 3), np.float32)
    hit = rng.random((16, 32)) < 0.3
    lidar[hit, 0] = 0.5
    lidar[hit, 1] = rng.random(int(hit.sum())) * 0.3
    as_255_driver = lidar.copy()
    as_255_driver[..., 1] = np.minimum(lidar[..., 1] * 3.0, 1.0)  # another scale, same order
    a, b = normalise(Modality.LIDAR, lidar, "scan_rank"), normalise(Modality.LIDAR, as_255_driver, "scan_rank")
    assert np.abs(a[1] - b[1]).max() < 0.02 and (a[1][~hit] == 0).all() and 0 < a[1][hit].min() and a[1].max() <= 1
    assert (scan_rank(lidar[..., 1], np.zeros((16, 32), bool)) == 0).all()


def test_camvid_evaluation_of_the_shipped_model(tmp_path, camvid):
    out = tmp_path / "eval"
    summary = evaluate_labelled(model_file("any2seg_b0.safetensors"), camvid, "camvid", out, split="test", threads=1)
    assert summary["frames"] == 3 and summary["network_input"] == ["64x96"]
    assert 0.0 <= summary["miou"] <= 100.0 and len(summary["per_class_iou"]) == 11
    assert np.array(summary["confusion"]).shape == (11, 12) and np.array(summary["confusion"]).sum() == 3 * (60 * 80 - 6)
    assert json.loads((out / "eval.json").read_text())["miou"] == summary["miou"]
    assert "| Pedestrian |" in (out / "eval.md").read_text()
    assert (out / "confusion.png").stat().st_size > 1000 and (out / "panels.png").stat().st_size > 1000
    squashed = evaluate_labelled(model_file("any2seg_b0.safetensors"), camvid, "camvid", tmp_path / "sq", split="test", squash=True, panels=0)
    assert squashed["network_input"] == ["64x128"]


def test_eval_command_names_the_missing_label_and_exits_non_zero(camvid):
    (camvid / "testannot" / "f000.png").unlink()
    run = subprocess.run([sys.executable, "-m", "modseg_ros.cli", "eval", str(model_file("any2seg_b0.safetensors")), str(camvid),
                          "--dataset", "camvid", "--out", str(camvid / "out")], capture_output=True, text=True)  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].endswith("testannot/f000.png is missing")


def test_mixed_training_draws_both_domains_and_records_no_paths(tmp_path, camvid, world_root):  # noqa: F811
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(world_root), out=str(out), real=(f"camvid={camvid}",), real_ratio=0.5, real_val_frames=2,
                      val_data=str(world_root), val_frames=2, val_every=4, steps=4, checkpoint_every=4, input_size=(32, 64),
                      batch_size=4, warmup_steps=1, workers=0,
                      threads=1, lidar_intensity="scan_rank", narrow_lidar_p=0.5, class_weighting="enet",
                      init=str(model_file("any2seg_b0.safetensors")))  # fmt: skip
    result = train(cfg)
    _, info = load_checkpoint(result.checkpoint)
    assert info.lidar_intensity == "scan_rank" and info.training["config"]["class_weighting"] == "enet"
    assert [d["dataset"] for d in info.training["data"]] == ["embedded world", "CamVid"]
    assert info.training["initialised_from"] == "any2seg_b0.safetensors"
    sidecar = result.checkpoint.with_suffix(".json").read_text()
    assert str(tmp_path) not in sidecar and str(camvid) not in sidecar
    history = json.loads((out / "state.json").read_text())["history"]
    assert "CamVid" in history["val"][-1] and "full" in history["val"][-1]
    assert len(history["class_weights"]) == NUM_CLASSES
    from modseg_ros.model.training import TrainingSet

    draws = TrainingSet(None, [], 0.0, None, 0), TrainingSet(object(), [object()], 0.5, None, 7)
    assert {draws[1].source_of(k) for k in range(64)} == {-1, 0}


def test_enet_class_weights_mix_the_sources_by_their_draws_and_favour_thin_classes(camvid, world_root):  # noqa: F811
    world, real = DeliverDataset(world_root, "train"), LabelledDataset(camvid, "camvid", "train")
    only_real = class_shares(None, [real], 1.0)
    camvid_pixels = np.concatenate([real.label(i).ravel() for i in range(len(real))])
    camvid_pixels = camvid_pixels[camvid_pixels != IGNORE]
    assert np.allclose(only_real, np.bincount(camvid_pixels, minlength=NUM_CLASSES) / camvid_pixels.size)
    only_world = class_shares(world, [], 0.0)
    assert np.allclose(class_shares(world, [real], 0.25), 0.75 * only_world + 0.25 * only_real)
    weights = enet_class_weights(only_real)
    assert np.isclose((only_real * weights).sum(), 1.0)  # a labelled pixel weighs 1 on average
    assert weights[CLASS_ID["Cars"]] > weights[CLASS_ID["Building"]] and only_real[CLASS_ID["Cars"]] < only_real[CLASS_ID["Building"]]
    with pytest.raises(ConfigError, match="class_weighting"):
        TrainConfig(data=str(world_root), out="x", class_weighting="median")
