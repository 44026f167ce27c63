"""ONNX export of a checkpoint's frame model (present modalities only, their number dynamic).

Two graphs, so that the runtime can hand the mask on before it computes the consistency scores:

- ``<checkpoint>.onnx``, the mask graph: inputs ``images`` (M, 3, H, W) float32 prepared by
  core/network_input.py, ``modality_index`` (M,) int64 and ``fused`` (M,) bool (which modalities the
  output fuses); outputs ``logits`` (1, K, H/4, W/4), ``modality_weights`` (M,) and, for a
  late-fusion architecture, its per-modality stage features ``stage1``..``stage4`` (M, 1, C_i, h_i, w_i);
- ``<checkpoint>.scores.onnx`` (late fusion only), the scoring graph: those stage features in,
  ``modality_consistency`` (M,; model/consistency.py, NaN where not measurable) out.

One pair serves every subset of the modalities. Per-modality-branch architectures (EQUISeg, the
CMNeXt-style baseline) pick their branches in Python, so their graph is traced for all four
modalities and only accepts exactly those (the export says so); they have no scores to compute.

Each graph records the sha256 of the weights it was exported from (metadata ``modseg_weights_sha256``):
the runtime refuses a graph whose weights are not the checkpoint's, so a stale ``.onnx`` left beside
a retrained checkpoint cannot run in its place. Weights that float16 holds exactly (the checkpoint
stores them in float16) are kept as float16 behind a Cast to float32: half the file, the same
outputs to the bit. The export is checked: ONNX Runtime runs the graphs on every subset of a random input and the
largest absolute difference of their outputs from torch's is reported, with the share of pixels whose
label agrees. MFF's per-pixel selection is a hard argmax: where two modalities are equally
consistent, a rounding difference can pick the other one and move a few logits by much more than
the float error; the label agreement shows how rare that is.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modseg_ros.core.types import MODALITIES, all_subsets, subset_name
from modseg_ros.errors import CheckpointError
from modseg_ros.model.checkpoint import load_checkpoint
from modseg_ros.model.onnx_backend import STAGES, WEIGHTS_KEY, scores_path
from modseg_ros.model.segmenter import FrameModel

OPSET = 17
DYNAMIC_SUBSETS = ("any2seg", "meanfusion")


@dataclass(frozen=True)
class ExportReport:
    path: Path  # the mask graph
    scores: Path | None  # the scoring graph beside it (late fusion only)
    max_abs_diff: dict[str, float]  # per subset name: max |ORT - torch| over logits, weights and scores
    label_agreement: dict[str, float]  # per subset name: share of pixels with the same argmax
    dynamic_subsets: bool

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


class _MaskGraph(torch.nn.Module):
    def __init__(self, frame: FrameModel) -> None:
        super().__init__()
        self.frame = frame

    def forward(self, images: torch.Tensor, modality_index: torch.Tensor, fused: torch.Tensor):
        logits, weights, features = self.frame.segment(images, modality_index, fused)
        return (logits, weights, *features)


class _ScoreGraph(torch.nn.Module):
    def __init__(self, frame: FrameModel) -> None:
        super().__init__()
        self.frame = frame

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        return self.frame.consistency(list(features))


def export_onnx(checkpoint: str | Path, out: str | Path | None = None, seed: int = 0) -> ExportReport:
    """Write the mask graph to ``out`` (default: beside the checkpoint) and, for late fusion, the
    scoring graph beside it; check both against torch on every subset."""
    import onnxruntime as ort

    checkpoint = Path(checkpoint)
    model, info = load_checkpoint(checkpoint)
    out = Path(out) if out else checkpoint.with_suffix(".onnx")
    frame = FrameModel(model).eval()
    h, w = info.config.input_size
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(len(MODALITIES), 3, h, w, generator=gen)
    index = torch.arange(len(MODALITIES))
    everything = torch.ones(len(MODALITIES), dtype=torch.bool)
    dynamic = info.config.arch in DYNAMIC_SUBSETS
    stages = STAGES if model.late_fusion else ()
    # the wrappers in eval mode: the export leaves a module in its own mode, which would put the
    # frame model (drop path) back in training for the check below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            _MaskGraph(frame).eval(), (images, index, everything), str(out), dynamo=False, opset_version=OPSET,
            input_names=["images", "modality_index", "fused"], output_names=["logits", "modality_weights", *stages],
            dynamic_axes={name: {0: "modalities"} for name in ("images", "modality_index", "fused", "modality_weights",
                                                               *stages)} if dynamic else None,
        )  # fmt: skip
        if stages:
            with torch.no_grad():  # not inference mode: the tracer records operations on these
                _, _, features = frame.segment(images, index, everything)
            torch.onnx.export(
                _ScoreGraph(frame).eval(), tuple(features), str(scores_path(out)), dynamo=False, opset_version=OPSET,
                input_names=list(stages), output_names=["modality_consistency"],
                dynamic_axes={name: {0: "modalities"} for name in (*stages, "modality_consistency")},
            )  # fmt: skip
    graphs = [out, scores_path(out)] if stages else [out]
    for graph in graphs:
        _finish(graph, info.weights_sha256)
    try:
        mask_session, *score_session = [ort.InferenceSession(str(g), providers=["CPUExecutionProvider"]) for g in graphs]
    except Exception as err:
        raise CheckpointError(f"ONNX Runtime cannot load the exported graphs {', '.join(map(str, graphs))}: {err}") from err
    diffs, agreement = {}, {}
    subsets = all_subsets() if dynamic else [tuple(MODALITIES)]
    for subset in subsets:
        idx = torch.tensor([MODALITIES.index(m) for m in subset])
        x = images[idx]
        fused = torch.ones(len(subset), dtype=torch.bool)
        with torch.inference_mode():
            ref_logits, ref_weights, ref_consistency = frame(x, idx, fused)
        logits, weights, *features = mask_session.run(None, {"images": x.numpy(), "modality_index": idx.numpy(), "fused": fused.numpy()})
        name = subset_name(subset)
        diff = max(np.abs(logits - ref_logits.numpy()).max(), np.abs(weights - ref_weights.numpy()).max())
        if score_session:
            (consistency,) = score_session[0].run(None, dict(zip(stages, features)))
            consistency_diff = np.nan_to_num(np.abs(consistency - ref_consistency.numpy()), nan=0.0)
            if not np.array_equal(np.isnan(consistency), np.isnan(ref_consistency.numpy())):
                consistency_diff = np.array([np.inf])  # measurable in one runtime, not in the other
            diff = max(diff, consistency_diff.max())
        diffs[name] = float(diff)
        agreement[name] = float((logits.argmax(axis=1) == ref_logits.numpy().argmax(axis=1)).mean())
    return ExportReport(out, scores_path(out) if stages else None, diffs, agreement, dynamic)


def _finish(path: Path, weights_sha256: str) -> None:
    """Store the float32 initializers that float16 holds exactly as float16 behind a Cast (the
    shipped graphs are committed: half the size), and record which weights the graph holds, so that
    a graph left behind by other weights is refused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    initializers, casts = [], []
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor) if tensor.data_type == TensorProto.FLOAT else None
        half = values.astype(np.float16) if values is not None else None
        if values is None or not np.array_equal(half.astype(np.float32), values):
            initializers.append(tensor)
            continue
        initializers.append(numpy_helper.from_array(half, f"{tensor.name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{tensor.name}_fp16"], [tensor.name], to=TensorProto.FLOAT))
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(initializers)
    nodes = casts + list(model.graph.node)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    model.metadata_props.add(key=WEIGHTS_KEY, value=weights_sha256)
    onnx.save(model, str(path))
