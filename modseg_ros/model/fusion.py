"""Fusion of per-modality features into one modality-agnostic feature, stage by stage.

Features arrive as a slot tensor ``(S, B, C, h, w)``: S modality slots, each holding one modality
for every sample, plus a ``present`` mask ``(S, B)``. ``None`` means every slot is present (the
inference path, which stacks only the modalities it has). Absent slots never enter a mean, a
softmax or an argmax, so fusing with a mask equals fusing the present slots alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Fused:
    feature: torch.Tensor  # (B, C, h, w)
    weights: torch.Tensor  # (S, B, h, w) fusion weight of each slot per pixel; sums to 1 over present slots


def slot_mask(features: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """(S, B) bool mask, all True when ``present`` is None."""
    if present is None:
        return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    return present


def masked_mean(features: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """Mean over the present slots: (S, B, C, h, w) -> (B, C, h, w)."""
    if present is None:
        return features.mean(dim=0)
    m = present.to(features.dtype)[:, :, None, None, None]
    return (features * m).sum(dim=0) / m.sum(dim=0).clamp(min=1.0)


def channel_cosine(features: torch.Tensor, reference: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel cosine over channels: (S, B, C, h, w) vs (B, C, h, w) -> (S, B, h, w)."""
    dot = (features * reference[None]).sum(dim=2)
    norms = features.norm(dim=2) * reference.norm(dim=1)[None]
    return dot / norms.clamp(min=eps)


def masked_softmax(scores: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """Softmax over slots (dim 0) of (S, B, h, w) scores, absent slots weighted 0."""
    if present is not None:
        scores = scores.masked_fill(~present[:, :, None, None], float("-inf"))
    return scores.softmax(dim=0)


class MeanFusion(nn.Module):
    """AnySeg-style fusion: the plain mean of the present modalities."""

    def forward(self, features: torch.Tensor, present: torch.Tensor | None) -> Fused:
        s, b, _, h, w = features.shape
        m = slot_mask(features, present).to(features.dtype)
        weights = (m / m.sum(dim=0, keepdim=True))[:, :, None, None].expand(s, b, h, w)
        return Fused(masked_mean(features, present), weights)


class ModalityAgnosticFusion(nn.Module):
    """Any2Seg's MFF (docs/design.md#d5-mff-fusion): correlation-weighted mean, then per-pixel fine-grained selection.

    1. consensus ``f_ma = mean_m F_m`` over the present modalities (the paper's ``f_ma^{t-1}``; the
       previous stage's fused feature has another width and resolution, so the current mean stands in);
    2. correlation ``s_m = cos(F_m, f_ma)`` per pixel, turned into weights ``w = softmax_m(s / τ)``;
       the paper's plain ``mean(s·F)`` changes the feature scale with the number of modalities, the
       softmax keeps it fixed, which matters when the subset changes from frame to frame;
    3. correlation-weighted mean ``f_mb = Σ_m w_m F_m``;
    4. selection: per pixel, the modality most consistent with ``f_mb`` (``argmax_m cos(F_m, f_mb)``)
       contributes its own feature ``f_ms`` (hard routing; the gradient flows through the feature);
    5. output ``f_mb + f_ms``.
    τ is learned per stage (log-parametrised, initial ``temperature``); nothing else is learned.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.log_inv_temperature = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self, features: torch.Tensor, present: torch.Tensor | None) -> Fused:
        # features: (S, B, C, h, w)
        consensus = masked_mean(features, present)  # (B, C, h, w)
        correlation = channel_cosine(features, consensus)  # (S, B, h, w)
        weights = masked_softmax(correlation * self.log_inv_temperature.exp(), present)
        blended = (weights[:, :, None] * features).sum(dim=0)  # f_mb: (B, C, h, w)
        consistency = channel_cosine(features, blended)  # (S, B, h, w)
        if present is not None:
            consistency = consistency.masked_fill(~present[:, :, None, None], float("-inf"))
        chosen = consistency.argmax(dim=0)  # (B, h, w)
        one_hot = torch.zeros_like(consistency).scatter(0, chosen[None], 1.0)  # (S, B, h, w)
        selected = (one_hot[:, :, None] * features).sum(dim=0)  # f_ms: (B, C, h, w)
        return Fused(blended + selected, weights)
