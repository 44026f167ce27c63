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
(core/network_input.py) and the post-processing: both return the logits as numpy and the engine
takes the labels from them (model/labels.py ``labels_on_grid``: bilinear on the network's input
grid, then the nearest of those for each output pixel; a 1920×1080 mask costs what a 512×256 one
does; mIoU on 60 unseen world frames at 512×256 within 0.05 of bilinear labels at full resolution,
BENCHMARKS.md). The ONNX backend (model/onnx_backend.py) runs the graphs written by ``modseg export
--onnx`` next to the checkpoint: it needs neither torch nor the training code, and only the torch
backend (model/torch_backend.py) imports torch.

The labels come before the consistency scores: the network's forward gives the logits and the
per-modality features, the labels are taken, ``on_labels`` gets them, and only then are the scores
computed from those features (a third of the network's time), so that a caller can publish the
mask without waiting for them.

``device`` (model/device.py): ``cpu``, ``cuda`` or ``cuda:N``. torch runs fp16 on CUDA; ONNX Runtime
takes TensorRT, then CUDA, then the CPU provider, as its build offers them; ``engine.runs_on`` says
which ran (the node logs it once).

``exclude`` leaves present modalities out of the fusion while still encoding them, so that their
consistency with the others (model/consistency.py) keeps being measured; the health monitor uses
this to drop a sensor that disagrees with the rest and to take it back when it agrees again.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from modseg_ros.core.checks.consistency import MIN_MODALITIES
from modseg_ros.core.network_input import encode_input, stack_inputs
from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import CheckpointError, ConfigError
from modseg_ros.model.labels import labels_on_grid
from modseg_ros.model.onnx_backend import OnnxBackend
from modseg_ros.model.sidecar import CheckpointInfo, SegmenterConfig, read_sidecar

BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # (H, W) uint8 class ids at the requested output size
    modality_weights: dict[Modality, float]  # fusion weight of each modality fed to the network (0: excluded)
    inference_ms: float  # wall time of predict(): preparation, network, upsampling, argmax
    modalities: tuple[Modality, ...]  # the present modalities, canonical order
    # consistency of each present modality with all present ones, in [0, 1] (model/consistency.py);
    # NaN with fewer than three present or for an architecture that fuses inside its encoder
    modality_consistency: dict[Modality, float] = field(default_factory=dict)


class SegmentationEngine:
    def __init__(self, backend, info: CheckpointInfo, backend_name: str) -> None:
        """``backend``: an ``OnnxBackend`` or a model/torch_backend.py ``TorchBackend``."""
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
    def lidar_intensity(self) -> str:
        """How the network reads LiDAR intensity (core/network_input.py LIDAR_INTENSITY)."""
        return self.info.lidar_intensity

    @property
    def runs_on(self) -> str:
        """Where the network runs, e.g. "torch on cpu (fp32)" or "onnxruntime with CUDAExecutionProvider, CPUExecutionProvider"."""
        return self._backend.runs_on

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @classmethod
    def load(
        cls, path: str | Path, backend: str = "torch", threads: int | None = None, onnx_path: str | Path | None = None,
        device: str = "cpu",
    ) -> SegmentationEngine:
        """A checkpoint (``.safetensors`` + sidecar) on ``device``; ``onnx`` runs ``onnx_path`` (default: the
        ``.onnx`` beside it)."""
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
        path = Path(path)
        weights = path.with_suffix(".safetensors")
        if backend == "torch":
            from modseg_ros.model.torch_backend import TorchBackend  # torch only here: the ONNX backend runs without it

            return cls(*TorchBackend.load(weights, device, threads), backend)
        onnx_path = Path(onnx_path) if onnx_path else path.with_suffix(".onnx")
        if not onnx_path.is_file():
            raise CheckpointError(f"ONNX graph {onnx_path} not found; create it with 'modseg export --onnx {weights}'")
        info = read_sidecar(weights)
        return cls(OnnxBackend(onnx_path, threads, weights, info.weights_sha256, device), info, backend)

    @classmethod
    def untrained(cls, arch: str = "any2seg", input_size: tuple[int, int] = (128, 256), seed: int = 0,
                  threads: int | None = None, device: str = "cpu") -> SegmentationEngine:  # fmt: skip
        """The real architecture with its initial weights (for plumbing and tests; predictions are noise)."""
        from modseg_ros.model.torch_backend import TorchBackend

        config = SegmenterConfig(arch=arch, input_size=tuple(input_size))
        backend = TorchBackend.untrained(config, seed, device, threads)
        return cls(backend, CheckpointInfo(name=f"{arch}-untrained", config=config), "torch")

    def predict(
        self,
        encoded: Mapping[Modality, np.ndarray],
        output_size: tuple[int, int] | None = None,
        absent: str = "drop",
        exclude: Collection[Modality] = (),
        consistency: bool = True,
        on_labels: Callable[[np.ndarray], None] | None = None,
    ) -> Prediction:
        """Segment one frame from the present modalities' H×W×3 uint8 encodings.

        ``output_size`` (H, W) defaults to the size of the first encoding. ``absent``: ``drop``
        (default) or ``zero`` (zero-fill absent modalities, the benchmark protocol). ``exclude``:
        present modalities left out of the labels' fusion (still encoded and scored for
        consistency); at least one present modality must remain. ``consistency=False`` skips the
        consistency scores (NaN) and their cost. ``on_labels`` is called with the labels as soon as
        they exist, before the consistency scores are computed (the node publishes the mask there).
        """
        start = time.perf_counter()
        present = tuple(m for m in MODALITIES if m in encoded)
        if output_size is None:
            if not present:
                raise ValueError("no modality to segment: the encoded inputs are empty")
            output_size = encoded[present[0]].shape[:2]
        inputs = {m: encode_input(m, encoded[m], self.input_size, self.lidar_intensity) for m in present}
        prediction = self.predict_inputs(inputs, output_size, absent, exclude, consistency, on_labels)
        return replace(prediction, inference_ms=(time.perf_counter() - start) * 1e3)

    def predict_inputs(
        self,
        inputs: Mapping[Modality, np.ndarray],
        output_size: tuple[int, int],
        absent: str = "drop",
        exclude: Collection[Modality] = (),
        consistency: bool = True,
        on_labels: Callable[[np.ndarray], None] | None = None,
    ) -> Prediction:
        """``predict`` from network inputs already made by core/network_input.py ``encode_input`` (3×h×w
        float32 at ``input_size``); ``inference_ms`` then covers the network and the labels only."""
        start = time.perf_counter()
        if absent not in ("drop", "zero"):
            raise ValueError(f"absent must be 'drop' or 'zero', got {absent!r}")
        images, index = stack_inputs(inputs, self.input_size, zero_fill=absent == "zero")
        slots, fused = self._fused_slots(index, exclude)
        logits, weights, features = self._backend.run(images, index, fused)
        labels = labels_on_grid(logits, tuple(output_size), self.input_size)[0]
        if on_labels is not None:
            on_labels(labels)
        slot_scores = self._slot_scores(features, len(slots)) if consistency else np.full(len(slots), np.nan, dtype=np.float32)
        return self._prediction(labels, weights, slot_scores, slots, inputs, start)

    def _slot_scores(self, features: list, count: int) -> np.ndarray:
        """The consistency scores (count,) from ``run``'s stage features; NaN without a scoring pass
        where they cannot be measured: an early-fusion model has no per-modality features, and two
        sensors cannot outvote each other."""
        if not len(features) or count < MIN_MODALITIES:
            return np.full(count, np.nan, dtype=np.float32)
        return self._backend.score(features)

    def predict_scoring_subsets(self, inputs: Mapping[Modality, np.ndarray], output_size: tuple[int, int],
                                subsets: Sequence[Collection[Modality]],
                                exclude: Collection[Modality] = ()) -> tuple[Prediction, list[dict[Modality, float]]]:  # fmt: skip
        """``predict_inputs``, plus the consistency scores the modalities of each of ``subsets`` would
        get were only that subset present (calibration: every set a node can be left with), from the
        same encoder pass (torch backend, late-fusion architectures)."""
        start = time.perf_counter()
        if self.backend != "torch":
            raise ConfigError("scoring subsets needs the torch backend")
        images, index = stack_inputs(inputs, self.input_size)
        slots, fused = self._fused_slots(index, exclude)
        rows = [[slots.index(m) for m in MODALITIES if m in subset] for subset in subsets]
        logits, weights, slot_scores, per_subset = self._backend.run_with_subsets(images, index, fused, rows)
        labels = labels_on_grid(logits, tuple(output_size), self.input_size)[0]
        prediction = self._prediction(labels, weights, slot_scores, slots, inputs, start)
        return prediction, [{slots[i]: float(c) for i, c in zip(row, s.tolist())} for row, s in zip(rows, per_subset)]

    @staticmethod
    def _fused_slots(index: np.ndarray, exclude: Collection[Modality]) -> tuple[list[Modality], np.ndarray]:
        slots = [MODALITIES[i] for i in index.tolist()]
        fused = np.array([m not in exclude for m in slots])
        if not fused.any():
            raise ValueError(f"every present modality is excluded ({', '.join(m.value for m in slots)}): nothing to fuse")
        return slots, fused

    @staticmethod
    def _prediction(labels: np.ndarray, weights: np.ndarray, slot_scores: np.ndarray, slots: list[Modality],
                    inputs: Mapping[Modality, np.ndarray], start: float) -> Prediction:  # fmt: skip
        fed = {m: float(w) for m, w in zip(slots, weights.tolist())}
        scores = {m: float(c) for m, c in zip(slots, slot_scores.tolist()) if m in inputs}
        present = tuple(m for m in MODALITIES if m in inputs)
        return Prediction(labels, fed, (time.perf_counter() - start) * 1e3, present, scores)
