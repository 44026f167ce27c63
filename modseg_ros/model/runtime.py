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
(core/network_input.py) and the post-processing: labels from the logits bilinearly upsampled to the
network's input grid, then the nearest of those for each output pixel (model/segmenter.py
``labels_on_grid``: a 1920×1080 mask costs what a 512×256 one does; mIoU on 60 unseen world frames
at 512×256 within 0.05 of bilinear labels at full resolution, BENCHMARKS.md). The ONNX backend runs
the graphs written by ``modseg export --onnx`` next to the checkpoint.

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
import torch

from modseg_ros.core.network_input import encode_input, stack_inputs
from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import CheckpointError, ConfigError
from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import CheckpointInfo, load_checkpoint, read_sidecar
from modseg_ros.model.consistency import MIN_MODALITIES
from modseg_ros.model.device import providers_for, torch_device
from modseg_ros.model.segmenter import FrameModel, SegmenterConfig, labels_on_grid

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


def _host(x: torch.Tensor) -> np.ndarray:
    return x.float().cpu().numpy()


class _TorchBackend:
    """The model on ``device``: fp16 on CUDA, fp32 on the CPU; results come back as fp32 on the CPU."""

    def __init__(self, model: torch.nn.Module, device: torch.device = torch.device("cpu")) -> None:
        self.device = device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.frame_model = FrameModel(model).eval().to(device, self.dtype)

    @property
    def runs_on(self) -> str:
        return f"torch on {self.device} ({'fp16' if self.dtype == torch.float16 else 'fp32'})"

    def _tensors(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(images).to(self.device, self.dtype), torch.from_numpy(modality_index).to(self.device),
                torch.from_numpy(fused).to(self.device))  # fmt: skip

    @torch.inference_mode()
    def run(self, images: np.ndarray, modality_index: np.ndarray,
            fused: np.ndarray) -> tuple[torch.Tensor, np.ndarray, list[torch.Tensor]]:  # fmt: skip
        """Logits, fusion weights and what ``score`` needs (the stage features; none for early fusion)."""
        logits, weights, features = self.frame_model.segment(*self._tensors(images, modality_index, fused))
        return logits.float().cpu(), _host(weights), features

    @torch.inference_mode()
    def score(self, features: list[torch.Tensor]) -> np.ndarray:
        return _host(self.frame_model.consistency(features))

    @torch.inference_mode()
    def run_with_subsets(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray,
                         subsets: list[list[int]]) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[np.ndarray]]:  # fmt: skip
        logits, weights, consistency, per_subset = self.frame_model.with_subsets(*self._tensors(images, modality_index, fused), subsets)
        return logits.float().cpu(), _host(weights), _host(consistency), [_host(s) for s in per_subset]


class _OnnxBackend:
    """The mask graph and, for late fusion, the scoring graph beside it (model/export.py)."""

    def __init__(self, onnx_path: Path, threads: int | None, weights: Path, weights_sha256: str, device: str = "cpu") -> None:
        import onnxruntime as ort

        from modseg_ros.model.export import STAGES, scores_path

        self.providers = providers_for(device, ort.get_available_providers())
        options = self._options(threads)
        self.session = self._session(onnx_path, options, weights, weights_sha256, self.providers)
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs not in (["logits", "modality_weights"], ["logits", "modality_weights", *STAGES]):
            raise CheckpointError(f"ONNX graph {onnx_path} predates the separate scoring graph (outputs: {', '.join(outputs)}); "
                                  f"export it again with 'modseg export --onnx {weights}'")  # fmt: skip
        self.stages = tuple(outputs[2:])  # a late-fusion graph hands its stage features to the scoring graph
        self.scoring = None
        if self.stages:
            scoring = scores_path(onnx_path)
            if not scoring.is_file():
                raise CheckpointError(f"ONNX scoring graph {scoring} not found beside {onnx_path}; "
                                      f"export again with 'modseg export --onnx {weights}'")  # fmt: skip
            # its own thread pool must not spin after its run: the mask graph's next run would wait
            # for those threads (with two threads, mask + scores took 35 ms instead of 17)
            quiet = self._options(threads)
            quiet.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.scoring = self._session(scoring, quiet, weights, weights_sha256, self.providers)

    @staticmethod
    def _options(threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        return options

    @property
    def runs_on(self) -> str:
        """The providers the session took, best first (ORT drops one it cannot start, e.g. TensorRT without its libraries)."""
        return "onnxruntime with " + ", ".join(self.session.get_providers())

    @staticmethod
    def _session(path: Path, options, weights: Path, weights_sha256: str, providers: list):
        import onnxruntime as ort

        from modseg_ros.model.export import WEIGHTS_KEY

        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # ORT raises its own exception types for unreadable graphs
            raise CheckpointError(f"ONNX graph {path} cannot be loaded: {err}") from err
        exported_from = session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)
        if exported_from != weights_sha256:
            which = "unknown weights (exported before graphs recorded them)" if exported_from is None else "other weights"
            raise CheckpointError(f"ONNX graph {path} was exported from {which}, not from {weights}; "
                                  f"export it again with 'modseg export --onnx {weights}'")  # fmt: skip
        return session

    def run(self, images: np.ndarray, modality_index: np.ndarray,
            fused: np.ndarray) -> tuple[torch.Tensor, np.ndarray, list[np.ndarray]]:  # fmt: skip
        logits, weights, *features = self.session.run(None, {"images": images, "modality_index": modality_index, "fused": fused})
        return torch.from_numpy(logits), weights, features

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        (consistency,) = self.scoring.run(None, dict(zip(self.stages, features)))
        return consistency


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
        if threads:
            torch.set_num_threads(threads)
        if backend == "torch":
            target = torch_device(device)  # before loading: an absent device is the first thing to hear
            model, info = load_checkpoint(weights)
            return cls(_TorchBackend(model, target), info, backend)
        onnx_path = Path(onnx_path) if onnx_path else path.with_suffix(".onnx")
        if not onnx_path.is_file():
            raise CheckpointError(f"ONNX graph {onnx_path} not found; create it with 'modseg export --onnx {weights}'")
        info = read_sidecar(weights)
        return cls(_OnnxBackend(onnx_path, threads, weights, info.weights_sha256, device), info, backend)

    @classmethod
    def untrained(cls, arch: str = "any2seg", input_size: tuple[int, int] = (128, 256), seed: int = 0,
                  threads: int | None = None, device: str = "cpu") -> SegmentationEngine:  # fmt: skip
        """The real architecture with its initial weights (for plumbing and tests; predictions are noise)."""
        if threads:
            torch.set_num_threads(threads)
        config = SegmenterConfig(arch=arch, input_size=tuple(input_size))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build(config).eval()
        return cls(_TorchBackend(model, torch_device(device)), CheckpointInfo(name=f"{arch}-untrained", config=config), "torch")

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
        labels = labels_on_grid(logits, tuple(output_size), self.input_size)[0].numpy()
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
        if not isinstance(self._backend, _TorchBackend):
            raise ConfigError("scoring subsets needs the torch backend")
        images, index = stack_inputs(inputs, self.input_size)
        slots, fused = self._fused_slots(index, exclude)
        rows = [[slots.index(m) for m in MODALITIES if m in subset] for subset in subsets]
        logits, weights, slot_scores, per_subset = self._backend.run_with_subsets(images, index, fused, rows)
        labels = labels_on_grid(logits, tuple(output_size), self.input_size)[0].numpy()
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
