"""EQUISeg's Cross-Modal Transformer Block (CMTB) fusion step (docs/design.md#d8-equiseg).

At one encoder stage, every present modality in turn is the *primary*: its tokens are the queries
of a cross-attention whose keys/values are the spatially reduced tokens of all the other present
modalities (the *auxiliaries*). The result is added back to the primary's own stream (residual Add),
so each branch continues with what the others saw. No modality is privileged: the primary role
rotates over all of them, which is what the paper calls equal encoding. Hierarchical selection: a
per-pixel score of each updated feature, softmaxed over the present modalities, weights their sum
into the fused feature that goes to the head (and gives the per-modality fusion weights).
"""
from __future__ import annotations

import torch
from torch import nn

from modseg_ros.model.fusion import Fused, masked_softmax, slot_mask
from modseg_ros.model.mit import EfficientSelfAttention


class CrossModalBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        nn.init.zeros_(self.attn.proj.weight)  # starts as the identity: each branch on its own
        nn.init.zeros_(self.attn.proj.bias)
        self.score = nn.Conv2d(dim, 1, 1)

    def exchange(self, features: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention of every primary to its auxiliaries, added back: (S, B, C, h, w) -> same."""
        s, b, c, h, w = features.shape
        if s == 1:
            return features
        mask = slot_mask(features, present)  # (S, B)
        tokens = features.flatten(3).transpose(2, 3).reshape(s * b, h * w, c)  # (S·B, N, C)
        context = self.attn.reduce(self.norm_kv(tokens), h, w)  # (S·B, L, C)
        n_ctx = context.shape[1]
        context = context.reshape(s, b, n_ctx, c).permute(1, 0, 2, 3).reshape(b, s * n_ctx, c)  # (B, S·L, C)
        # key slot j is an auxiliary of primary i when j is present and j != i: (S_i, B, S_j)
        others = ~torch.eye(s, dtype=torch.bool, device=features.device)
        allowed = others[:, None, :] & mask.T[None, :, :]
        has_aux = allowed.any(dim=2)  # (S, B)
        allowed = allowed | ~has_aux[:, :, None]  # keep softmax finite; those outputs are zeroed below
        key_mask = allowed[:, :, :, None].expand(s, b, s, n_ctx).reshape(s * b, s * n_ctx)
        out = self.attn(
            self.norm_q(tokens), h, w, context=context.repeat(s, 1, 1), context_mask=key_mask
        )  # (S·B, N, C)
        out = out * has_aux.reshape(s * b, 1, 1).to(out.dtype)
        return features + out.reshape(s, b, h, w, c).permute(0, 1, 4, 2, 3)

    def forward(self, features: torch.Tensor, present: torch.Tensor | None) -> tuple[torch.Tensor, Fused]:
        updated = self.exchange(features, present)
        s, b, c, h, w = updated.shape
        scores = self.score(updated.reshape(s * b, c, h, w)).reshape(s, b, h, w)
        weights = masked_softmax(scores, present)
        return updated, Fused((weights[:, :, None] * updated).sum(dim=0), weights)
