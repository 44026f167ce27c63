"""Camera + LiDAR frames with point labels (data/pointframes.py) and their camera-only against
camera + LiDAR evaluation (eval/pointframes.py), on a tiny SemanticKITTI-layout folder the tests
write themselves: a wall of points 10 m ahead, its left half labelled car, its right half road."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from modseg_ros.core.metrics import ConfusionMatrix
from modseg_ros.core.palette import IGNORE
from modseg_ros.core.types import Modality
from modseg_ros.data.labelled import load_mapping
from modseg_ros.data.pointframes import LABEL_IDS, PointFrameDataset, is_point_mapping, load_point_mapping
from modseg_ros.errors import DatasetError
from modseg_ros.eval.pointframes import evaluate_point_frames, present_iou, project_points, score_points
from modseg_ros.paths import model_file

H, W, F = 48, 96, 60.0  # image size and focal length (px)
CAR, ROAD, UNLABELED = 10, 40, 0  # SemanticKITTI ids
# LiDAR (x forward, y left, z up) -> camera optical (x right, y down, z forward)
TR = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]], dtype=float)


def wall_scan() -> tuple[np.ndarray, np.ndarray]:
    """Points on a wall 10 m ahead (in view), a few behind (out of view) and two without a return."""
    ys, zs = np.meshgrid(np.linspace(-7.5, 7.5, 24), np.linspace(-3.5, 3.5, 12))
    wall = np.stack([np.full(ys.size, 10.0), ys.ravel(), zs.ravel(), np.linspace(0, 1, ys.size)], 1)
    labels = np.where(wall[:, 1] > 0, CAR, ROAD).astype(np.uint32) | (7 << 16)  # instance bits above the class
    labels[:5] = UNLABELED
    behind = np.array([[-10.0, 0, 0, 0.5], [-5.0, 1.0, 0, 0.5]])
    nothing = np.zeros((2, 4))
    points = np.concatenate([wall, behind, nothing]).astype(np.float32)
    return points, np.concatenate([labels, [CAR, CAR, UNLABELED, UNLABELED]]).astype(np.uint32)


def write_kitti(root, frames=1, labelled=True):
    seq = root / "sequences" / "00"
    for sub in ("image_2", "velodyne", "labels"):
        (seq / sub).mkdir(parents=True, exist_ok=True)
    p2 = np.array([[F, 0, W / 2, 0], [0, F, H / 2, 0], [0, 0, 1, 0]])
    (seq / "calib.txt").write_text(f"P0: {' '.join(map(str, p2.ravel()))}\nP2: {' '.join(map(str, p2.ravel()))}\nTr: {' '.join(map(str, TR.ravel()))}\n")
    points, labels = wall_scan()
    for i in range(frames):
        image = np.zeros((H, W, 3), np.uint8)
        image[:, W // 2 :] = (20, 30, 160)  # a blue car on the left of the LiDAR is on the right of the image
        image[:, : W // 2] = (110, 110, 115)
        Image.fromarray(image).save(seq / "image_2" / f"{i:06d}.png")
        points.tofile(seq / "velodyne" / f"{i:06d}.bin")
        if labelled:
            labels.tofile(seq / "labels" / f"{i:06d}.label")
    return root


@pytest.fixture
def kitti(tmp_path):
    return write_kitti(tmp_path / "kitti")


def test_a_frame_has_its_image_scan_rig_and_point_labels(kitti):
    data = PointFrameDataset(kitti, "semantickitti")
    frame = data[0]
    assert frame.rgb.shape == (H, W, 3) and len(frame.cloud.points) == 24 * 12 + 2  # the two without a return dropped
    car, road = (load_mapping("semantickitti", LABEL_IDS - 1).class_names.index(n) for n in ("Car", "Road"))
    assert set(np.unique(frame.labels)) == {car, road, IGNORE}  # instance bits dropped, unlabeled ignored
    u, v, index = project_points(frame)
    assert len(index) == 24 * 12  # the wall, not the points behind
    ahead = frame.cloud.points[index]
    assert np.allclose(u, np.floor(-ahead[:, 1] / 10 * F + W / 2)) and np.allclose(v, np.floor(-ahead[:, 2] / 10 * F + H / 2))
    assert frame.rig.base_from[Modality.LIDAR].translation[2] == pytest.approx(1.73)  # semantickitti.yaml's lidar_height_m


def test_frames_without_labels_are_read_but_not_scored(tmp_path):
    root = write_kitti(tmp_path / "k", labelled=False)
    assert PointFrameDataset(root, "semantickitti")[0].labels is None
    summary = evaluate_point_frames(model_file("any2seg_b0.safetensors"), root, "semantickitti", tmp_path / "out", threads=1)
    assert summary["camera"]["miou"] is None and "labelled_points" not in summary["per_frame"][0]
    assert (tmp_path / "out" / "panels.png").is_file()


def test_scoring_counts_each_labelled_point_at_its_pixel():
    classes = ("Car", "Road", "Pole")
    labels = np.array([0, 0, 1, 1, 1, IGNORE], np.uint8)
    u = np.array([0, 1, 2, 3, 3, 0])
    v = np.zeros(6, np.int64)
    right = np.array([[0, 0, 1, 1]], np.uint8)
    matrix = ConfusionMatrix(len(classes) + 1)
    score_points(matrix, right, u, v, labels)
    assert present_iou(matrix, classes) == {"Car": 100.0, "Road": 100.0}  # Pole is absent from the labels
    all_road = np.ones((1, 4), np.uint8)
    matrix = ConfusionMatrix(len(classes) + 1)
    score_points(matrix, all_road, u, v, labels)
    assert present_iou(matrix, classes) == {"Car": 0.0, "Road": 60.0}  # 3 of the 5 scored points are road
    no_counterpart = np.full((1, 4), len(classes), np.uint8)
    matrix = ConfusionMatrix(len(classes) + 1)
    score_points(matrix, no_counterpart, u, v, labels)
    assert present_iou(matrix, classes) == {"Car": 0.0, "Road": 0.0} and matrix.matrix[:, -1].sum() == 5


def test_evaluation_runs_the_network_on_both_input_sets(tmp_path):
    root = write_kitti(tmp_path / "k", frames=2)
    out = tmp_path / "eval"
    summary = evaluate_point_frames(model_file("any2seg_b0.safetensors"), root, "semantickitti", out, threads=1)
    assert summary["frames"] == 2 and summary["network_input"] == ["64x128"] and summary["lidar_intensity"] == "raw"
    scored = 24 * 12 - 5  # the wall's points less the unlabeled ones
    assert [f["labelled_points"] for f in summary["per_frame"]] == [scored, scored]
    for name in ("camera", "camera+lidar"):
        assert np.array(summary[name]["confusion"]).sum() == 2 * scored
        assert set(summary[name]["per_class_iou"]) == {"Car", "Road"}
        assert 0.0 <= summary[name]["miou"] <= 100.0
    assert json.loads((out / "eval.json").read_text())["camera+lidar"]["miou"] == summary["camera+lidar"]["miou"]
    assert "| camera+lidar |" in (out / "eval.md").read_text()
    assert Image.open(out / "panels.png").size == (4 * 320, 2 * 160)  # image, two masks, points; a row per frame
    evaluate_point_frames(model_file("any2seg_b0.safetensors"), root, "semantickitti", tmp_path / "q", frames=1, panel_image=False)
    assert Image.open(tmp_path / "q" / "panels.png").size == (3 * 320, 160)


def test_shipped_point_mappings_load_and_camvid_is_not_one():
    for name in ("semantickitti", "rellis3d"):
        mapping = load_point_mapping(name)
        assert is_point_mapping(name) and mapping.lidar_height_m > 0 and mapping.camera == "P2"
    assert not is_point_mapping("camvid")
    kitti = load_point_mapping("semantickitti").classes
    lut = kitti.index_lut(LABEL_IDS)
    assert lut[252] == lut[10] == kitti.class_names.index("Car") and lut[0] == lut[1] == IGNORE  # moving car, unlabeled


def test_a_label_id_in_two_classes_is_refused(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("images: '*.png'\nlabels: [['a', 'b']]\nclasses:\n  1: {name: A, deliver: [Road], also: [2]}\n  2: {name: B, deliver: [Sky]}\n")
    with pytest.raises(DatasetError, match="label id.s. 2 belong to more than one class"):
        load_mapping(path)


def test_bad_frames_are_refused_naming_the_file(tmp_path):
    root = write_kitti(tmp_path / "k")
    seq = root / "sequences" / "00"
    labels = (seq / "labels" / "000000.label").read_bytes()
    (seq / "labels" / "000000.label").write_bytes(labels[:-8])
    with pytest.raises(DatasetError, match=r"labels .*000000.label: 290 labels for a scan of 292 points"):
        PointFrameDataset(root, "semantickitti")[0]
    (seq / "labels" / "000000.label").write_bytes(labels[:-4] + np.uint32(77).tobytes())
    with pytest.raises(DatasetError, match=r"000000.label: id 77 is neither a class nor ignored in semantickitti.yaml"):
        PointFrameDataset(root, "semantickitti")[0]
    (seq / "labels" / "000000.label").write_bytes(labels)
    calib = (seq / "calib.txt").read_text()
    (seq / "calib.txt").write_text(calib.replace("Tr: 0.0 ", "Tr: "))
    with pytest.raises(DatasetError, match=r"calib.txt: key 'Tr' needs 12 finite numbers \(a 3×4 matrix\), 11 values"):
        PointFrameDataset(root, "semantickitti")[0]
    (seq / "calib.txt").write_text(calib.replace("P2: 60.0", "P2: sixty"))
    with pytest.raises(DatasetError, match=r"calib.txt, line 2: 'P2' holds a value that is not a number"):
        PointFrameDataset(root, "semantickitti")[0]
    (seq / "calib.txt").write_text(calib)
    (seq / "velodyne" / "000000.bin").unlink()
    with pytest.raises(DatasetError, match=r"000000.png: scan .*velodyne/000000.bin is missing"):
        PointFrameDataset(root, "semantickitti")[0]


def test_eval_command_names_the_missing_scan_and_exits_non_zero(kitti):
    (kitti / "sequences" / "00" / "velodyne" / "000000.bin").unlink()
    run = subprocess.run([sys.executable, "-m", "modseg_ros.cli", "eval", str(model_file("any2seg_b0.safetensors")), str(kitti),
                          "--dataset", "semantickitti", "--out", str(kitti / "out")], capture_output=True, text=True)  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].endswith("velodyne/000000.bin is missing")
