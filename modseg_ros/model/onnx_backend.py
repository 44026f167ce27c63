"""The segmentation engine's ONNX Runtime backend: the graphs ``modseg export --onnx`` writes
(model/export.py), run with onnxruntime and numpy only, so that a node without torch can run them.

- ``<checkpoint>.onnx``, the mask graph: ``images``, ``modality_index``, ``fused`` in; ``logits``,
  ``modality_weights`` and, for late fusion, the per-modality stage features ``stage1``..``stage4`` out;
- ``<checkpoint>.scores.onnx`` (late fusion only), the scoring graph: those stage features in,
  ``modality_consistency`` out.

Each graph carries the sha256 of the weights it was exported from (metadata ``WEIGHTS_KEY``); a
graph of other weights is refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from modseg_ros.errors import CheckpointError
from modseg_ros.model.device import providers_for

STAGES = ("stage1", "stage2", "stage3", "stage4")
# Graph metadata key holding the sha256 of the weights the graph was exported from.
WEIGHTS_KEY = "modseg_weights_sha256"


def scores_path(onnx_path: Path) -> Path:
    """The scoring graph beside a mask graph: ``net.onnx`` -> ``net.scores.onnx``."""
    return onnx_path.with_suffix(".scores.onnx")


class OnnxBackend:
    """The mask graph and, for late fusion, the scoring graph beside it (model/export.py)."""

    def __init__(self, onnx_path: Path, threads: int | None, weights: Path, weights_sha256: str, device: str = "cpu") -> None:
        import onnxruntime as ort

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
            fused: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:  # fmt: skip
        logits, weights, *features = self.session.run(None, {"images": images, "modality_index": modality_index, "fused": fused})
        return logits, weights, features

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        (consistency,) = self.scoring.run(None, dict(zip(self.stages, features)))
        return consistency
