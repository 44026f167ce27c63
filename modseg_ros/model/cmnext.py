"""CMNeXt-style baseline (Zhang et al., CVPR 2023; docs/design.md#baselines), simplified, RGB-centric.

An RGB MiT branch and one auxiliary MiT branch shared by depth, LiDAR and events (shared weights,
per-modality stem). At every stage a Self-Query hub scores each auxiliary feature
(``x ← sigmoid(conv1×1(dwconv3×3(x)))·x + x``) and keeps their element-wise maximum; a fusion
module mixes it into the RGB stream (``rgb ← rgb + MLP([rgb, hub])``, standing in for CMNeXt's
FRM + FFM), and the RGB stream carries on to the next stage and to the head.

Trained on full inputs only (no modality dropout), like CMNeXt. An absent modality is zero-filled
(the benchmark protocol): this design has no way to drop its RGB input. It has no per-modality
fusion weights; it reports equal weights for the modalities it is given.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from modseg_ros.model.head import AllMLPHead
from modseg_ros.model.mit import MiTConfig, MiTEncoder
from modseg_ros.model.segmenter import NUM_MODALITIES, ModalBatch, Segmenter, SegmenterOutput
from modseg_ros.model.sidecar import SegmenterConfig


class SelfQueryHub(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, 1, 1), nn.Sigmoid())

    def forward(self, aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # aux: (A, B, C, h, w) -> scored aux (A, B, C, h, w), hub (B, C, h, w)
        a, b, c, h, w = aux.shape
        flat = aux.reshape(a * b, c, h, w)
        scored = (self.score(flat) * flat + flat).reshape(a, b, c, h, w)
        return scored, scored.max(dim=0).values


class CMNeXtStyle(Segmenter):
    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        mit = replace(MiTConfig.named(config.backbone), drop_path=config.drop_path)
        self.rgb = MiTEncoder(mit, 1)
        self.aux = MiTEncoder(mit, NUM_MODALITIES - 1)
        self.hubs = nn.ModuleList(SelfQueryHub(d) for d in mit.dims)
        self.mix = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * d, d, 1), nn.GELU(), nn.Conv2d(d, d, 1)) for d in mit.dims
        )
        self.head = AllMLPHead(mit.dims, config.head_dim, config.num_classes)

    def forward(self, batch: ModalBatch) -> SegmenterOutput:
        # batch.images: (S, B, 3, H, W) in any slot order -> logits (B, K, H/4, W/4)
        s, b, _, hh, ww = batch.images.shape
        mask = batch.mask.to(batch.images.dtype)[:, :, None, None, None]
        dense = batch.images.new_zeros((NUM_MODALITIES, b, 3, hh, ww))
        dense = dense.index_add(0, batch.modality_index, batch.images * mask)  # zero-fill the absent
        aux_index = torch.arange(NUM_MODALITIES - 1, device=dense.device).repeat_interleave(b)
        rgb = self.rgb.stem(dense[0], torch.zeros(b, dtype=torch.long, device=dense.device))
        aux = self.aux.stem(dense[1:].flatten(0, 1), aux_index)
        fused = []
        for stage, (hub, mix) in enumerate(zip(self.hubs, self.mix)):
            rgb = self.rgb.stages[stage](rgb)
            aux = self.aux.stages[stage](aux)
            scored, hub_feature = hub(aux.unflatten(0, (NUM_MODALITIES - 1, b)))
            rgb = rgb + mix(torch.cat([rgb, hub_feature], dim=1))
            aux = scored.flatten(0, 1)
            fused.append(rgb)
        weights = torch.full((s, b), 1.0 / s, device=dense.device)
        return SegmenterOutput(logits=self.head(fused), modality_weights=weights)
