"""SegFormer's all-MLP decode head: project every stage to one width, upsample to stage 1, fuse, classify."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AllMLPHead(nn.Module):
    def __init__(self, in_dims: tuple[int, ...], embed_dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(d, embed_dim, 1) for d in in_dims)  # a per-pixel Linear
        self.fuse = nn.Sequential(
            nn.Conv2d(embed_dim * len(in_dims), embed_dim, 1, bias=False),
            nn.BatchNorm2d(embed_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # features: [(B, C_i, H/2^(i+2), W/2^(i+2))] -> logits (B, K, H/4, W/4)
        size = features[0].shape[-2:]
        projected = [
            F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if i else p(f)
            for i, (p, f) in enumerate(zip(self.proj, features))
        ]
        x = self.fuse(torch.cat(projected[::-1], dim=1))  # deepest first, as the reference head
        return self.classifier(self.dropout(x))
