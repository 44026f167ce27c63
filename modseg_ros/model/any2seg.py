"""Any2Seg (Zheng, Lyu, Wang, ECCV 2024): one weight-shared MiT encoder over every present modality,
MFF at every stage, SegFormer head; LSCD at training time (losses.py, teacher.py).

Decisions where the paper is not available (docs/design.md, D3-D7):
- shared MiT encoder with per-modality stems (1×1 input adapter + LayerNorm, see mit.py);
- MFF (fusion.py) on the four stages; the streams stay per modality, fused features go to the head;
- absent modalities are dropped from the fusion, not zero-filled;
- the LSCD student embedding of a modality is its masked global-average-pooled stage-4 feature
  through a 2-layer projection, computed only in training mode.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from modseg_ros.model.fusion import ModalityAgnosticFusion
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


class Any2Seg(Segmenter):
    late_fusion = True

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        mit = replace(MiTConfig.named(config.backbone), drop_path=config.drop_path)
        self.encoder = MiTEncoder(mit, NUM_MODALITIES)
        self.fusion = nn.ModuleList(ModalityAgnosticFusion(config.mff_temperature) for _ in mit.dims)
        self.head = AllMLPHead(mit.dims, config.head_dim, config.num_classes)
        self.embed = nn.Sequential(
            nn.Linear(mit.dims[-1], config.embedding_dim),
            nn.GELU(),
            nn.Linear(config.embedding_dim, config.embedding_dim),
        )

    def encode(self, batch: ModalBatch) -> list[torch.Tensor]:
        # batch.images: (S, B, 3, H, W) -> [(S, B, C_i, h_i, w_i)]
        return encode_slots(self.encoder, batch)

    def decode(self, features: list[torch.Tensor], present: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # [(S, B, C_i, h_i, w_i)], present (S, B) -> logits (B, K, h_1, w_1), weights (S, B)
        fused = [mff(f, present) for mff, f in zip(self.fusion, features)]
        return self.head([f.feature for f in fused]), mean_weights([f.weights for f in fused])

    def forward(self, batch: ModalBatch) -> SegmenterOutput:
        # batch.images: (S, B, 3, H, W) -> logits (B, K, H/4, W/4)
        features = self.encode(batch)
        logits, weights = self.decode(features, batch.present)
        embeddings = None
        if self.training:
            pooled = features[-1].mean(dim=(3, 4))  # (S, B, C_4); absent slots are zeros, masked in the loss
            embeddings = self.embed(pooled)
        return SegmenterOutput(
            logits=logits,
            modality_weights=weights,
            stage_features=features,
            embeddings=embeddings,
        )
