"""Mean-fusion baseline (AnySeg-style student): the shared MiT encoder of Any2Seg, the plain mean of
the present modalities at every stage, SegFormer head. Trained with modality dropout; no MFF, no LSCD.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from modseg_ros.model.fusion import MeanFusion
from modseg_ros.model.head import AllMLPHead
from modseg_ros.model.mit import MiTConfig, MiTEncoder
from modseg_ros.model.segmenter import (
    NUM_MODALITIES,
    ModalBatch,
    Segmenter,
    SegmenterOutput,
    encode_slots,
    mean_weights,
)
from modseg_ros.model.sidecar import SegmenterConfig


class MeanFusionSeg(Segmenter):
    late_fusion = True

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        mit = replace(MiTConfig.named(config.backbone), drop_path=config.drop_path)
        self.encoder = MiTEncoder(mit, NUM_MODALITIES)
        self.fusion = MeanFusion()
        self.head = AllMLPHead(mit.dims, config.head_dim, config.num_classes)

    def encode(self, batch: ModalBatch) -> list[torch.Tensor]:
        # batch.images: (S, B, 3, H, W) -> [(S, B, C_i, h_i, w_i)]
        return encode_slots(self.encoder, batch)

    def decode(self, features: list[torch.Tensor], present: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # [(S, B, C_i, h_i, w_i)], present (S, B) -> logits (B, K, h_1, w_1), weights (S, B)
        fused = [self.fusion(f, present) for f in features]
        return self.head([f.feature for f in fused]), mean_weights([f.weights for f in fused])

    def forward(self, batch: ModalBatch) -> SegmenterOutput:
        # batch.images: (S, B, 3, H, W) -> logits (B, K, H/4, W/4)
        features = self.encode(batch)
        logits, weights = self.decode(features, batch.present)
        return SegmenterOutput(logits=logits, modality_weights=weights, stage_features=features)
