"""The shipped checkpoints: load, run on both backends and segment a world frame sensibly."""
import hashlib

import numpy as np
import pytest
import torch

from modseg_ros.core.checks.consistency import ConsistencyCalibration, calibration_path
from modseg_ros.core.metrics import ConfusionMatrix
from modseg_ros.core.network_input import encode_input, stack_inputs
from modseg_ros.core.palette import CLASS_ID
from modseg_ros.core.types import MODALITIES, Modality, all_subsets
from modseg_ros.data.deliver import DeliverDataset
from modseg_ros.model.labels import labels_on_grid
from modseg_ros.model.export import export_onnx
from modseg_ros.model.loading import default_checkpoint
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.model.sidecar import read_sidecar
from modseg_ros.model.segmenter import upsample


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    root = tmp_path_factory.mktemp("shipped")
    from modseg_ros.data.world.generate import WorldOptions, generate

    generate(WorldOptions(out=root, frames=2, seed=77, split="val", sequence_frames=2, threads=1, conditions=("sun",)))
    return DeliverDataset(root, "val")[1]


SHIPPED = ("any2seg_b0", "any2seg_b0_128x256", "any2seg_b0_real")
CALIBRATED = ("any2seg_b0", "any2seg_b0_128x256")  # any2seg_b0_real: scores published, not judged (models/MODEL_CARD.md)


def test_the_default_checkpoint_is_shipped():
    assert default_checkpoint() is not None, "models/any2seg_b0.safetensors is missing"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_checkpoint_segments_a_world_frame_and_has_its_calibration(frame, name):
    path = default_checkpoint().with_name(f"{name}.safetensors")
    engine = SegmentationEngine.load(path, threads=2)
    assert engine.name == name
    if name in CALIBRATED:
        calibration = ConsistencyCalibration.load(calibration_path(path))
        assert calibration.weights_sha256 == engine.info.weights_sha256  # made for these weights
    else:
        assert not calibration_path(path).exists()
    assert engine.config.arch == "any2seg" and len(engine.classes) == 25
    full = engine.predict(frame.encodings, output_size=frame.label.shape)
    cm = ConfusionMatrix()
    cm.update(full.labels, frame.label)
    assert cm.pixel_accuracy() > 70.0
    road = frame.label == CLASS_ID["Road"]
    assert (full.labels[road] == CLASS_ID["Road"]).mean() > 0.8
    assert set(full.modality_weights) == set(MODALITIES)
    lidar_only = engine.predict({Modality.LIDAR: frame.encodings[Modality.LIDAR]}, output_size=frame.label.shape)
    assert (lidar_only.labels[road] == CLASS_ID["Road"]).mean() > 0.5  # a sparse modality alone still finds the road


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_checkpoint_ships_the_onnx_graphs_of_its_own_weights(frame, name):
    # models/ carries the graphs so that a node without torch runs model.backend: onnx. The engine
    # refuses graphs stamped with other weights, so a checkpoint retrained without exporting them
    # again fails here: modseg export --onnx models/<name>.safetensors
    path = default_checkpoint().with_name(f"{name}.safetensors")
    onnx_engine = SegmentationEngine.load(path, backend="onnx", threads=2)
    assert onnx_engine.info.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    torch_engine = SegmentationEngine.load(path, threads=2)
    a, b = (engine.predict(frame.encodings, output_size=frame.label.shape) for engine in (torch_engine, onnx_engine))
    assert (a.labels == b.labels).mean() > 0.999
    assert np.allclose(list(a.modality_consistency.values()), list(b.modality_consistency.values()), atol=1e-4)


def test_the_labels_of_the_shipped_networks_logits_are_torchs_interpolation_then_nearest(frame):
    # model/labels.py (both backends' labels) against torch's F.interpolate on real logits: every
    # subset of a world frame, at the label's size, a camera's larger and a smaller one
    engine = SegmentationEngine.load(default_checkpoint(), backend="onnx", threads=2)
    inputs = {m: encode_input(m, e, engine.input_size, engine.lidar_intensity) for m, e in frame.encodings.items()}
    for subset in all_subsets():
        images, index = stack_inputs({m: inputs[m] for m in subset}, engine.input_size)
        logits, _, _ = engine._backend.run(images, index, np.ones(len(index), dtype=bool))
        for size in (frame.label.shape, (1080, 1920), (37, 61)):
            grid = (min(size[0], engine.input_size[0]), min(size[1], engine.input_size[1]))
            on_grid = upsample(torch.from_numpy(logits), grid).argmax(dim=1, keepdim=True).float()
            expected = torch.nn.functional.interpolate(on_grid, size=size, mode="nearest-exact")[:, 0].to(torch.uint8).numpy()
            assert np.array_equal(labels_on_grid(logits, size, engine.input_size), expected), (subset, size)


def test_the_exported_onnx_graph_agrees_with_torch(frame, tmp_path):
    path = default_checkpoint()
    report = export_onnx(path, tmp_path / "shipped.onnx")
    assert min(report.label_agreement.values()) > 0.99
    torch_engine = SegmentationEngine.load(path)
    onnx_engine = SegmentationEngine.load(path, backend="onnx", threads=2, onnx_path=report.path)
    for subset in ((Modality.CAMERA,), (Modality.DEPTH, Modality.EVENTS), tuple(MODALITIES)):
        inputs = {m: frame.encodings[m] for m in subset}
        a, b = torch_engine.predict(inputs), onnx_engine.predict(inputs)
        assert (a.labels == b.labels).mean() > 0.999
        assert np.allclose(list(a.modality_weights.values()), list(b.modality_weights.values()), atol=1e-4)
        assert np.allclose(list(a.modality_consistency.values()), list(b.modality_consistency.values()), atol=1e-4, equal_nan=True)
    excluded = {Modality.LIDAR}  # left out of the fusion, still scored, on both backends alike
    a, b = (engine.predict(frame.encodings, exclude=excluded) for engine in (torch_engine, onnx_engine))
    assert a.modality_weights[Modality.LIDAR] == 0.0 and b.modality_weights[Modality.LIDAR] == 0.0
    assert (a.labels == b.labels).mean() > 0.999
    assert np.allclose(list(a.modality_consistency.values()), list(b.modality_consistency.values()), atol=1e-4)
    assert np.isfinite(list(b.modality_consistency.values())).all()


def test_the_real_data_model_reads_lidar_by_rank_and_names_its_data():
    # any2seg_b0_real is also the weights a later run continues from (--init, docs/model.md)
    path = default_checkpoint().with_name("any2seg_b0_real.safetensors")
    info = read_sidecar(path)
    assert info.lidar_intensity == "scan_rank" and info.training["steps"] > 0
    assert [d["dataset"] for d in info.training["data"]] == ["embedded world", "CamVid"]
