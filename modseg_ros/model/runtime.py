"""The segmentation engine the node, the offline replay and the evaluation call.

    engine = SegmentationEngine.load("models/any2seg_b0.safetensors", backend="torch", threads=2)
    prediction = engine.predict({Modality.CAMERA: rgb, Modality.LIDAR: lidar_code}, output_size=(256, 512))
    prediction.labels            # (256, 512) uint8 DELIVER class ids
    prediction.modality_weights  # {Modality.CAMERA: 0.61, Modality.LIDAR: 0.39}
    prediction.modality_consistency  # {Modality.CAMERA: 0.83, ...}: agreement with the other sensors
    prediction.inference_ms

Inputs are the camera-grid H×W×3 uint8 encodings of core/encoding.py for the modalities that are
present; an absent modality is simply left out and the network drops it. ``absent="zero"`` instead
feeds zeros for it, the benchmark protocol (evaluation only). Both backends share the preparation
(model/inputs.py) and the post-processing (bilinear upsampling of the logits, argmax); the ONNX
backend runs the graph written by ``modseg export --onnx`` next to the checkpoint.

``exclude`` leaves present modalities out of the fusion while still encoding them, so that their
consistency with the others (model/consistency.py) keeps being measured; the health monitor uses
this to drop a sensor that disagrees with the rest and to take it back when it agrees again.
"""
from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import CheckpointError, ConfigError
from modseg_ros.model.checkpoint import CheckpointInfo, load_checkpoint, read_sidecar
from modseg_ros.model.inputs import encode_input, stack_inputs
from modseg_ros.model.segmenter import FrameModel, SegmenterConfig, build, labels_at

BACKENDS = ("torch", "onnx")
DEFAULT_CHECKPOINT = "any2seg_b0.safetensors"


def default_checkpoint() -> Path | None:
    """The shipped default checkpoint (models/any2seg_b0.safetensors), if installed."""
    from modseg_ros.paths import model_file

    path = model_file(DEFAULT_CHECKPOINT)
    return path if path.is_file() else None


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # (H, W) uint8 class ids at the requested output size
    modality_weights: dict[Modality, float]  # fusion weight of each modality fed to the network (0: excluded)
    inference_ms: float  # wall time of predict(): preparation, network, upsampling, argmax
    modalities: tuple[Modality, ...]  # the present modalities, canonical order
    # consistency of each present modality with all present ones, in [0, 1] (model/consistency.py);
    # NaN with fewer than three present or for an architecture that fuses inside its encoder
    modality_consistency: dict[Modality, float] = field(default_factory=dict)


class _TorchBackend:
    def __init__(self, model: torch.nn.Module) -> None:
        self.frame_model = FrameModel(model).eval()

    @torch.inference_mode()
    def run(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray,
            score: bool) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:  # fmt: skip
        logits, weights, consistency = self.frame_model(torch.from_numpy(images), torch.from_numpy(modality_index),
                                                        torch.from_numpy(fused), score)  # fmt: skip
        return logits, weights.numpy(), consistency.numpy()

    @torch.inference_mode()
    def run_with_subsets(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray,
                         subsets: list[list[int]]) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[np.ndarray]]:  # fmt: skip
        logits, weights, consistency, per_subset = self.frame_model.with_subsets(
            torch.from_numpy(images), torch.from_numpy(modality_index), torch.from_numpy(fused), subsets)
        return logits, weights.numpy(), consistency.numpy(), [s.numpy() for s in per_subset]


class _OnnxBackend:
    def __init__(self, onnx_path: Path, threads: int | None, weights: Path, weights_sha256: str) -> None:
        import onnxruntime as ort

        from modseg_ros.model.export import WEIGHTS_KEY

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own exception types for unreadable graphs
            raise CheckpointError(f"ONNX graph {onnx_path} cannot be loaded: {err}") from err
        inputs = {i.name for i in self.session.get_inputs()}
        if "fused" not in inputs:
            raise CheckpointError(f"ONNX graph {onnx_path} predates the consistency output (inputs: {', '.join(sorted(inputs))}); "
                                  f"export it again with 'modseg export --onnx {weights}'")  # fmt: skip
        exported_from = self.session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)
        if exported_from != weights_sha256:
            which = "unknown weights (exported before graphs recorded them)" if exported_from is None else "other weights"
            raise CheckpointError(f"ONNX graph {onnx_path} was exported from {which}, not from {weights}; "
                                  f"export it again with 'modseg export --onnx {weights}'")  # fmt: skip

    def run(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray,
            score: bool) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:  # fmt: skip
        # the exported graph always computes the scores; unasked, they are not reported
        logits, weights, consistency = self.session.run(
            ["logits", "modality_weights", "modality_consistency"],
            {"images": images, "modality_index": modality_index, "fused": fused},
        )
        return torch.from_numpy(logits), weights, consistency if score else np.full_like(consistency, np.nan)


class SegmentationEngine:
    def __init__(self, backend: _TorchBackend | _OnnxBackend, info: CheckpointInfo, backend_name: str) -> None:
        self._backend = backend
        self.info = info
        self.backend = backend_name

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def config(self) -> SegmenterConfig:
        return self.info.config

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the network runs at."""
        return self.info.config.input_size

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @classmethod
    def load(
        cls, path: str | Path, backend: str = "torch", threads: int | None = None, onnx_path: str | Path | None = None
    ) -> SegmentationEngine:
        """A checkpoint (``.safetensors`` + sidecar); ``onnx`` runs ``onnx_path`` (default: the ``.onnx`` beside it)."""
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
        path = Path(path)
        weights = path.with_suffix(".safetensors")
        if threads:
            torch.set_num_threads(threads)
        if backend == "torch":
            model, info = load_checkpoint(weights)
            return cls(_TorchBackend(model), info, backend)
        onnx_path = Path(onnx_path) if onnx_path else path.with_suffix(".onnx")
        if not onnx_path.is_file():
            raise CheckpointError(f"ONNX graph {onnx_path} not found; create it with 'modseg export --onnx {weights}'")
        info = read_sidecar(weights)
        return cls(_OnnxBackend(onnx_path, threads, weights, info.weights_sha256), info, backend)

    @classmethod
    def untrained(cls, arch: str = "any2seg", input_size: tuple[int, int] = (128, 256), seed: int = 0,
                  threads: int | None = None) -> SegmentationEngine:  # fmt: skip
        """The real architecture with its initial weights (for plumbing and tests; predictions are noise)."""
        if threads:
            torch.set_num_threads(threads)
        config = SegmenterConfig(arch=arch, input_size=tuple(input_size))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build(config).eval()
        return cls(_TorchBackend(model), CheckpointInfo(name=f"{arch}-untrained", config=config), "torch")

    def predict(
        self,
        encoded: Mapping[Modality, np.ndarray],
        output_size: tuple[int, int] | None = None,
        absent: str = "drop",
        exclude: Collection[Modality] = (),
        consistency: bool = True,
    ) -> Prediction:
        """Segment one frame from the present modalities' H×W×3 uint8 encodings.

        ``output_size`` (H, W) defaults to the size of the first encoding. ``absent``: ``drop``
        (default) or ``zero`` (zero-fill absent modalities, the benchmark protocol). ``exclude``:
        present modalities left out of the labels' fusion (still encoded and scored for
        consistency); at least one present modality must remain. ``consistency=False`` skips the
        consistency scores (NaN) and their cost with the torch backend.
        """
        start = time.perf_counter()
        present = tuple(m for m in MODALITIES if m in encoded)
        if output_size is None:
            if not present:
                raise ValueError("no modality to segment: the encoded inputs are empty")
            output_size = encoded[present[0]].shape[:2]
        inputs = {m: encode_input(m, encoded[m], self.input_size) for m in present}
        prediction = self.predict_inputs(inputs, output_size, absent, exclude, consistency)
        return replace(prediction, inference_ms=(time.perf_counter() - start) * 1e3)

    def predict_inputs(
        self,
        inputs: Mapping[Modality, np.ndarray],
        output_size: tuple[int, int],
        absent: str = "drop",
        exclude: Collection[Modality] = (),
        consistency: bool = True,
    ) -> Prediction:
        """``predict`` from network inputs already made by model/inputs.py ``encode_input`` (3×h×w
        float32 at ``input_size``); ``inference_ms`` then covers the network and the labels only."""
        start = time.perf_counter()
        if absent not in ("drop", "zero"):
            raise ValueError(f"absent must be 'drop' or 'zero', got {absent!r}")
        images, index = stack_inputs(inputs, self.input_size, zero_fill=absent == "zero")
        slots, fused = self._fused_slots(index, exclude)
        logits, weights, slot_scores = self._backend.run(images, index, fused, consistency)
        return self._prediction(logits, weights, slot_scores, slots, inputs, output_size, start)

    def predict_scoring_subsets(self, inputs: Mapping[Modality, np.ndarray], output_size: tuple[int, int],
                                subsets: Sequence[Collection[Modality]],
                                exclude: Collection[Modality] = ()) -> tuple[Prediction, list[dict[Modality, float]]]:  # fmt: skip
        """``predict_inputs``, plus the consistency scores the modalities of each of ``subsets`` would
        get were only that subset present (calibration: every set a node can be left with), from the
        same encoder pass (torch backend, late-fusion architectures)."""
        start = time.perf_counter()
        if not isinstance(self._backend, _TorchBackend):
            raise ConfigError("scoring subsets needs the torch backend")
        images, index = stack_inputs(inputs, self.input_size)
        slots, fused = self._fused_slots(index, exclude)
        rows = [[slots.index(m) for m in MODALITIES if m in subset] for subset in subsets]
        logits, weights, slot_scores, per_subset = self._backend.run_with_subsets(images, index, fused, rows)
        prediction = self._prediction(logits, weights, slot_scores, slots, inputs, output_size, start)
        return prediction, [{slots[i]: float(c) for i, c in zip(row, s.tolist())} for row, s in zip(rows, per_subset)]

    @staticmethod
    def _fused_slots(index: np.ndarray, exclude: Collection[Modality]) -> tuple[list[Modality], np.ndarray]:
        slots = [MODALITIES[i] for i in index.tolist()]
        fused = np.array([m not in exclude for m in slots])
        if not fused.any():
            raise ValueError(f"every present modality is excluded ({', '.join(m.value for m in slots)}): nothing to fuse")
        return slots, fused

    @staticmethod
    def _prediction(logits: torch.Tensor, weights: np.ndarray, slot_scores: np.ndarray, slots: list[Modality],
                    inputs: Mapping[Modality, np.ndarray], output_size: tuple[int, int], start: float) -> Prediction:  # fmt: skip
        labels = labels_at(logits, tuple(output_size))[0].numpy()
        fed = {m: float(w) for m, w in zip(slots, weights.tolist())}
        scores = {m: float(c) for m, c in zip(slots, slot_scores.tolist()) if m in inputs}
        present = tuple(m for m in MODALITIES if m in inputs)
        return Prediction(labels, fed, (time.perf_counter() - start) * 1e3, present, scores)
