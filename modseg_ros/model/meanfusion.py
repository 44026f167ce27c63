"""Mean-fusion baseline (AnySeg-style student): the shared MiT encoder of Any2Seg, the plain mean of
the present modalities at every stage, SegFormer head. Trained with modality dropout; no MFF, no LSCD.
"""
from __future__ import annotations

from dataclasses import replace

from modseg_ros.model.fusion import MeanFusion
from modseg_ros.model.head import AllMLPHead
from modseg_ros.model.mit import MiTConfig, MiTEncoder
from modseg_ros.model.segmenter import (
    NUM_MODALITIES,
    ModalBatch,
    Segmenter,
    SegmenterConfig,
    SegmenterOutput,
    encode_slots,
    mean_weights,
)


class MeanFusionSeg(Segmenter):
    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        mit = replace(MiTConfig.named(config.backbone), drop_path=config.drop_path)
        self.encoder = MiTEncoder(mit, NUM_MODALITIES)
        self.fusion = MeanFusion()
        self.head = AllMLPHead(mit.dims, config.head_dim, config.num_classes)

    def forward(self, batch: ModalBatch) -> SegmenterOutput:
        # batch.images: (S, B, 3, H, W) -> logits (B, K, H/4, W/4)
        features = encode_slots(self.encoder, batch)
        fused = [self.fusion(f, batch.present) for f in features]
        return SegmenterOutput(
            logits=self.head([f.feature for f in fused]),
            modality_weights=mean_weights([f.weights for f in fused]),
            stage_features=features,
        )
