"""What every segmentation architecture shares: its config, its input batch and its output
(model/architectures.py builds one by name).

A batch holds modality *slots*: ``images`` ``(S, B, 3, H, W)`` with the modality of each slot in
``modality_index`` (indices into ``MODALITIES``) and a ``present`` mask ``(S, B)``. Training uses the
four slots with a random present mask per sample (modality dropout); inference stacks only the
modalities it has and passes ``present=None``. Architectures drop absent modalities; they never see
the zeros an absent slot holds (except the CMNeXt-style baseline, which zero-fills by design).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modseg_ros.core.network_input import aspect_size, encode_input
from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.model.consistency import modality_consistency, subset_consistency
from modseg_ros.model.labels import labels_at
from modseg_ros.model.sidecar import SegmenterConfig

NUM_MODALITIES = len(MODALITIES)


@dataclass
class ModalBatch:
    images: torch.Tensor  # (S, B, 3, H, W) normalised
    modality_index: torch.Tensor  # (S,) int64, index into MODALITIES of each slot
    present: torch.Tensor | None = None  # (S, B) bool; None = every slot present

    @property
    def mask(self) -> torch.Tensor:
        if self.present is None:
            return torch.ones(self.images.shape[:2], dtype=torch.bool, device=self.images.device)
        return self.present


@dataclass
class SegmenterOutput:
    logits: torch.Tensor  # (B, K, H/4, W/4)
    modality_weights: torch.Tensor  # (S, B) mean fusion weight per slot; 0 for absent slots
    stage_features: list[torch.Tensor] = field(default_factory=list)  # [(S, B, C_i, h_i, w_i)] per modality
    embeddings: torch.Tensor | None = None  # (S, B, D) LSCD student embeddings (training only)


class Segmenter(nn.Module):
    """Base class: ``forward(ModalBatch) -> SegmenterOutput``.

    Late-fusion architectures (``late_fusion = True``: one encoder stream per modality that never
    sees the others, fused only at the head's input) also split the forward pass in two, so that
    the per-modality features can be fused again in other combinations at the cost of the fusion
    and the head alone (model/consistency.py):
    ``encode(batch) -> [(S, B, C_i, h_i, w_i)]`` and ``decode(features, present) -> (logits, weights)``.
    """

    config: SegmenterConfig
    late_fusion = False

    def forward(self, batch: ModalBatch) -> SegmenterOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, batch: ModalBatch) -> list[torch.Tensor]:  # pragma: no cover - late fusion only
        raise NotImplementedError(f"{type(self).__name__} fuses inside its encoder; it has no separate encode()")

    def decode(self, features: list[torch.Tensor], present: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} fuses inside its encoder; it has no separate decode()")  # pragma: no cover


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def segment_camera(model: Segmenter, rgb: np.ndarray, pixels: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """DELIVER labels (H×W uint8) of one RGB image at its native resolution, camera only, the network
    at ``size`` or at ``aspect_size(rgb's shape, pixels)`` (evaluation on real labelled images)."""
    return segment_encoded(model, {Modality.CAMERA: rgb}, size or aspect_size(rgb.shape[:2], pixels), rgb.shape[:2])


@torch.no_grad()
def segment_encoded(model: Segmenter, encoded: Mapping[Modality, np.ndarray], size: tuple[int, int],
                    output_size: tuple[int, int], lidar_intensity: str = "raw") -> np.ndarray:  # fmt: skip
    """DELIVER labels (``output_size`` uint8) from the present modalities' H×W×3 encodings, the
    network at ``size`` (any multiple of 32), absent modalities dropped."""
    device = next(model.parameters()).device
    present = [m for m in MODALITIES if m in encoded]
    images = np.stack([encode_input(m, encoded[m], size, lidar_intensity) for m in present])[:, None]  # (S, 1, 3, h, w)
    index = torch.tensor([MODALITIES.index(m) for m in present], device=device)
    logits = model(ModalBatch(torch.from_numpy(images).to(device), index)).logits
    return labels_at(logits.float().cpu().numpy(), tuple(output_size))[0]


def mean_weights(per_stage: list[torch.Tensor]) -> torch.Tensor:
    """Per-pixel slot weights of every stage [(S, B, h, w)] -> one weight per slot and sample (S, B)."""
    return torch.stack([w.mean(dim=(2, 3)) for w in per_stage]).mean(dim=0)


def encode_slots(encoder: nn.Module, batch: ModalBatch) -> list[torch.Tensor]:
    """Run a shared encoder over the present (slot, sample) pairs only -> [(S, B, C_i, h_i, w_i)].

    Absent pairs are not computed; their features are zeros that fusion masks out.
    """
    s, b = batch.images.shape[:2]
    images = batch.images.flatten(0, 1)  # (S·B, 3, H, W)
    modality = batch.modality_index.repeat_interleave(b)  # (S·B,)
    if batch.present is None:
        return [f.reshape((-1, b) + f.shape[1:]) for f in encoder(images, modality)]
    keep = batch.present.flatten().nonzero().squeeze(1)
    features = encoder(images[keep], modality[keep])
    dense = []
    for f in features:
        full = f.new_zeros((s * b,) + f.shape[1:]).index_copy(0, keep, f)
        dense.append(full.unflatten(0, (s, b)))
    return dense


class FrameModel(nn.Module):
    """One frame, present modalities only: the interface of the runtime and of the ONNX graphs.

    ``images`` (M, 3, H, W), ``modality_index`` (M,) and ``fused`` (M,) bool, which of them the
    output fuses -> logits (1, K, H/4, W/4), the fusion weight of each of the M modalities (M,; 0
    for the unfused) and each modality's consistency with the others (M,; model/consistency.py,
    NaN where not measurable). M may change from call to call. A late-fusion model still encodes
    the modalities it does not fuse, to keep checking them; the others drop them.

    The forward is two steps, so that the mask can go out before the scores are computed:
    ``segment`` (logits, weights and the per-modality stage features) and ``consistency`` (the
    scores from those features; a third of the network's time).
    """

    def __init__(self, model: Segmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, modality_index: torch.Tensor,
                fused: torch.Tensor, score: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """``score=False`` skips the consistency decode (NaN scores)."""
        logits, weights, features = self.segment(images, modality_index, fused)
        if not score or not features:
            return logits, weights, torch.full_like(weights, float("nan"))
        return logits, weights, self.consistency(features)

    def segment(self, images: torch.Tensor, modality_index: torch.Tensor,
                fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:  # fmt: skip
        """Logits, fusion weights and the stage features [(M, 1, C_i, h_i, w_i)] the scores are
        computed from (none for a model that fuses inside its encoder: it has no per-modality features)."""
        if not self.model.late_fusion:  # fuses inside its encoder: an unfused modality is not fed at all
            out = self.model(ModalBatch(images[fused][:, None], modality_index[fused]))
            weights = torch.zeros(fused.shape, dtype=out.modality_weights.dtype).masked_scatter(fused, out.modality_weights[:, 0])
            return out.logits, weights, []
        features = self.model.encode(ModalBatch(images[:, None], modality_index))
        logits, weights = self.model.decode(features, fused[:, None])  # present: (M, 1), one sample
        return logits, weights[:, 0], features

    def consistency(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Each modality's consistency with the others (M,) from ``segment``'s stage features."""
        return modality_consistency(self.model.decode, features)

    def with_subsets(self, images: torch.Tensor, modality_index: torch.Tensor, fused: torch.Tensor,
                     subsets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:  # fmt: skip
        """``forward``, plus the consistency scores (each (len(subset),)) the modalities of each subset
        (indices into the M) would get were only that subset present, from the same encoder features
        (late fusion only: its encoders never see the other modalities)."""
        if not self.model.late_fusion:
            raise ValueError(f"{type(self.model).__name__} fuses inside its encoder: subsets cannot share its features")
        logits, weights, features = self.segment(images, modality_index, fused)
        return logits, weights, self.consistency(features), subset_consistency(self.model.decode, features, subsets)
