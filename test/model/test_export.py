import numpy as np
import pytest
import torch

from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import CheckpointError
from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import save_checkpoint
from modseg_ros.model.export import export_onnx
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.model.sidecar import SegmenterConfig


def test_onnx_graph_serves_every_subset_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = build(SegmenterConfig(arch="any2seg", input_size=(32, 64)))
    with torch.no_grad():  # away from the symmetric initialisation, whose MFF ties are exact
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_checkpoint(model.eval(), tmp_path / "net.safetensors", half=False)
    report = export_onnx(path)
    assert report.path == tmp_path / "net.onnx" and report.scores == tmp_path / "net.scores.onnx" and report.dynamic_subsets
    assert len(report.max_abs_diff) == 15
    assert min(report.label_agreement.values()) > 0.99
    assert sorted(report.max_abs_diff.values())[7] < 1e-4  # the median subset: float error only

    torch_engine = SegmentationEngine.load(path)
    onnx_engine = SegmentationEngine.load(tmp_path / "net.onnx", backend="onnx", threads=1)
    rng = np.random.default_rng(0)
    encoded = {m: rng.integers(0, 256, (64, 128, 3), dtype=np.uint8) for m in (Modality.DEPTH, Modality.EVENTS)}
    a, b = torch_engine.predict(encoded), onnx_engine.predict(encoded)
    assert (a.labels == b.labels).mean() > 0.99
    assert set(b.modality_weights) == {Modality.DEPTH, Modality.EVENTS}
    encoded[Modality.CAMERA] = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    a, b = torch_engine.predict(encoded), onnx_engine.predict(encoded)  # three: scored, by the scoring graph
    assert b.modality_consistency == pytest.approx(a.modality_consistency, abs=1e-4)
    assert onnx_engine.input_size == (32, 64) and len(MODALITIES) == 4


def test_a_graph_from_other_weights_is_refused(tmp_path):
    """A stale .onnx beside a retrained checkpoint must not run in its place."""
    config = SegmenterConfig(arch="any2seg", input_size=(32, 64))
    torch.manual_seed(0)
    path = save_checkpoint(build(config).eval(), tmp_path / "net.safetensors", half=False)
    export_onnx(path)
    torch.manual_seed(1)
    save_checkpoint(build(config).eval(), path, half=False)  # retrained: new weights, the old graph stays
    with pytest.raises(CheckpointError, match=r"net.onnx was exported from other weights.*modseg export --onnx"):
        SegmentationEngine.load(path, backend="onnx")


def test_a_graph_without_its_scoring_graph_is_refused(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(build(SegmenterConfig(arch="any2seg", input_size=(32, 64))).eval(), tmp_path / "net.safetensors", half=False)
    export_onnx(path).scores.unlink()
    with pytest.raises(CheckpointError, match=r"net.scores.onnx not found.*modseg export --onnx"):
        SegmentationEngine.load(path, backend="onnx")
