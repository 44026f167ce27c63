"""EQUISeg (Li, Tan, Zheng, Liu, arXiv 2509.24505): one MiT branch per modality, a CMTB after every
stage (cross-attention with rotating primary, residual Add, selection), SegFormer head; SGM at
training time (losses.sgm_loss). The method section is not public: the CMTB and SGM forms are the
decisions of docs/design.md#d8-equiseg.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from modseg_ros.model.cmtb import CrossModalBlock
from modseg_ros.model.head import AllMLPHead
from modseg_ros.model.mit import MiTConfig, MiTEncoder
from modseg_ros.model.segmenter import (
    NUM_MODALITIES,
    ModalBatch,
    Segmenter,
    SegmenterOutput,
    mean_weights,
)
from modseg_ros.model.sidecar import SegmenterConfig


def _run_present(module: nn.Module, x: torch.Tensor, keep: torch.Tensor | None, *args) -> torch.Tensor:
    """Apply ``module`` to the samples ``keep`` of x (B, ...) only; zeros for the others."""
    if keep is None:
        return module(x, *args)
    y = module(x[keep], *args)
    return y.new_zeros((x.shape[0],) + y.shape[1:]).index_copy(0, keep, y)


class EQUISeg(Segmenter):
    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        mit = replace(MiTConfig.named(config.backbone), drop_path=config.drop_path)
        self.branches = nn.ModuleList(MiTEncoder(mit, 1) for _ in range(NUM_MODALITIES))
        self.cmtb = nn.ModuleList(CrossModalBlock(d, h, r) for d, h, r in zip(mit.dims, mit.heads, mit.sr_ratios))
        self.head = AllMLPHead(mit.dims, config.head_dim, config.num_classes)

    def forward(self, batch: ModalBatch) -> SegmenterOutput:
        # batch.images: (S, B, 3, H, W) -> logits (B, K, H/4, W/4)
        s, b = batch.images.shape[:2]
        branches = [self.branches[i] for i in batch.modality_index.tolist()]
        keep = [None if batch.present is None else batch.present[i].nonzero().squeeze(1) for i in range(s)]
        zeros = torch.zeros(b, dtype=torch.long, device=batch.images.device)
        x = [_run_present(br.stem, batch.images[i], keep[i], zeros if keep[i] is None else zeros[: len(keep[i])])
             for i, br in enumerate(branches)]  # fmt: skip
        own, fused, weights = [], [], []
        for stage, block in enumerate(self.cmtb):
            features = torch.stack([_run_present(br.stages[stage], x[i], keep[i]) for i, br in enumerate(branches)])
            updated, f = block(features, batch.present)  # (S, B, C, h, w)
            own.append(features)
            fused.append(f.feature)
            weights.append(f.weights)
            x = list(updated.unbind(0))
        return SegmenterOutput(
            logits=self.head(fused),
            modality_weights=mean_weights(weights),
            stage_features=own,
        )
