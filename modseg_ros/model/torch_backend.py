"""The segmentation engine's torch backend (model/runtime.py imports it only when asked for, so that
the ONNX Runtime backend runs without torch installed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import load_checkpoint
from modseg_ros.model.device import torch_device
from modseg_ros.model.segmenter import FrameModel
from modseg_ros.model.sidecar import CheckpointInfo, SegmenterConfig


def _host(x: torch.Tensor) -> np.ndarray:
    return x.float().cpu().numpy()


class TorchBackend:
    """The model on ``device``: fp16 on CUDA, fp32 on the CPU; results come back as fp32 on the CPU."""

    def __init__(self, model: torch.nn.Module, device: torch.device = torch.device("cpu")) -> None:
        self.device = device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.frame_model = FrameModel(model).eval().to(device, self.dtype)

    @classmethod
    def load(cls, weights: Path, device: str, threads: int | None) -> tuple[TorchBackend, CheckpointInfo]:
        """A checkpoint's model on ``device`` and its sidecar info."""
        if threads:
            torch.set_num_threads(threads)
        target = torch_device(device)  # before loading: an absent device is the first thing to hear
        model, info = load_checkpoint(weights)
        return cls(model, target), info

    @classmethod
    def untrained(cls, config: SegmenterConfig, seed: int, device: str, threads: int | None) -> TorchBackend:
        """The architecture of ``config`` with the initial weights ``seed`` gives (the global RNG is left alone)."""
        if threads:
            torch.set_num_threads(threads)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build(config).eval()
        return cls(model, torch_device(device))

    @property
    def runs_on(self) -> str:
        return f"torch on {self.device} ({'fp16' if self.dtype == torch.float16 else 'fp32'})"

    def _tensors(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(images).to(self.device, self.dtype), torch.from_numpy(modality_index).to(self.device),
                torch.from_numpy(fused).to(self.device))  # fmt: skip

    @torch.inference_mode()
    def run(self, images: np.ndarray, modality_index: np.ndarray,
            fused: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[torch.Tensor]]:  # fmt: skip
        """Logits, fusion weights and what ``score`` needs (the stage features; none for early fusion)."""
        logits, weights, features = self.frame_model.segment(*self._tensors(images, modality_index, fused))
        return _host(logits), _host(weights), features

    @torch.inference_mode()
    def score(self, features: list[torch.Tensor]) -> np.ndarray:
        return _host(self.frame_model.consistency(features))

    @torch.inference_mode()
    def run_with_subsets(self, images: np.ndarray, modality_index: np.ndarray, fused: np.ndarray,
                         subsets: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:  # fmt: skip
        logits, weights, consistency, per_subset = self.frame_model.with_subsets(*self._tensors(images, modality_index, fused), subsets)
        return _host(logits), _host(weights), _host(consistency), [_host(s) for s in per_subset]
