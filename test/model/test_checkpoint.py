import json
import pickle

import pytest
import torch

from modseg_ros.errors import CheckpointError
from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import load_checkpoint, save_checkpoint
from modseg_ros.model.segmenter import FrameModel
from modseg_ros.model.sidecar import SegmenterConfig, sidecar_path

CONFIG = SegmenterConfig(arch="any2seg", input_size=(32, 64))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build(CONFIG).eval()
    path = save_checkpoint(model, tmp_path / "net.safetensors", training={"steps": 3}, half=False)
    return model, path


def test_round_trip_restores_the_same_network(saved):
    model, path = saved
    loaded, info = load_checkpoint(path)
    assert info.config == CONFIG and info.name == "net" and info.training["steps"] == 3
    x, idx = torch.randn(2, 3, 32, 64), torch.tensor([0, 2])
    with torch.no_grad():
        fused = torch.ones(2, dtype=torch.bool)
        a, wa, _ = FrameModel(model)(x, idx, fused)
        b, wb, _ = FrameModel(loaded)(x, idx, fused)
    assert torch.equal(a, b) and torch.equal(wa, wb)
    side = json.loads(sidecar_path(path).read_text())
    assert side["classes"][6] == "Road" and side["inputs"]["lidar"]["resize"] == "nearest point per block"


def test_half_precision_storage_changes_predictions_negligibly(tmp_path, saved):
    model, _ = saved
    path = save_checkpoint(model, tmp_path / "half.safetensors")
    loaded, _ = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x, idx = torch.randn(4, 3, 32, 64), torch.arange(4)
    with torch.no_grad():
        fused = torch.ones(4, dtype=torch.bool)
        a, _, _ = FrameModel(model)(x, idx, fused)
        b, _, _ = FrameModel(loaded)(x, idx, fused)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.98


def test_missing_file_and_missing_sidecar(tmp_path, saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="nothere.safetensors not found"):
        load_checkpoint(tmp_path / "nothere.safetensors")
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="sidecar .*net.json not found"):
        load_checkpoint(path)


def test_pickle_files_are_refused_before_reading(tmp_path, saved):
    model, _ = saved
    torch_file = tmp_path / "torch.safetensors"
    torch.save(model.state_dict(), torch_file)
    with pytest.raises(CheckpointError, match="pickle / torch.save file; it is refused"):
        load_checkpoint(torch_file)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(raw)


def test_wrong_shapes_are_refused(tmp_path, saved):
    _, path = saved
    side = json.loads(sidecar_path(path).read_text())
    side["model"]["backbone"] = "b1"  # the weights are B0
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match=r"does not fit architecture 'any2seg': '.*' has shape"):
        load_checkpoint(path)


def test_wrong_classes_are_refused(tmp_path, saved):
    _, path = saved
    side = json.loads(sidecar_path(path).read_text())
    side["classes"][3] = "Person"
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="class 3 is 'Person', expected 'Pedestrian'"):
        load_checkpoint(path)
    side["classes"] = side["classes"][:19]
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="19 classes"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_sidecar_are_refused(tmp_path, saved):
    model, path = saved
    other = save_checkpoint(build(CONFIG), tmp_path / "other.safetensors")
    path.write_bytes(other.read_bytes())
    with pytest.raises(CheckpointError, match="does not match its sidecar"):
        load_checkpoint(path)
