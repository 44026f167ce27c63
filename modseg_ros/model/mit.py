"""SegFormer's Mix Transformer (MiT) encoder, stage by stage (Xie et al., NeurIPS 2021).

Follows the reference ``mix_transformer.py`` / HF ``modeling_segformer.py``: overlapping patch
embeddings, efficient self-attention with spatial reduction, Mix-FFN with a 3×3 depth-wise conv.
Stages are separate modules because every fusion architecture here fuses between stages.

Modality-specific stems: every architecture runs one encoder over several modalities. The first
patch embedding can keep its convolution shared and give each modality its own input adapter
(a 1×1 colour mixing, 3→3) and its own LayerNorm, all gathered by a modality index tensor. The
CMNeXt paper does the same (shared patch-embedding conv, per-modality LayerNorm), and the gather
keeps a shared-encoder model exportable to ONNX with a dynamic number of modalities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MiTConfig:
    dims: tuple[int, int, int, int] = (32, 64, 160, 256)
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    drop_path: float = 0.1

    @classmethod
    def b0(cls) -> MiTConfig:
        return cls()

    @classmethod
    def b1(cls) -> MiTConfig:
        return cls(dims=(64, 128, 320, 512))

    @classmethod
    def b2(cls) -> MiTConfig:
        return cls(dims=(64, 128, 320, 512), depths=(3, 4, 6, 3))

    @classmethod
    def named(cls, name: str) -> MiTConfig:
        variants = {"b0": cls.b0, "b1": cls.b1, "b2": cls.b2}
        if name not in variants:
            raise ValueError(f"unknown MiT variant '{name}' (choose from {', '.join(variants)})")
        return variants[name]()


class DropPath(nn.Module):
    """Stochastic depth per sample (identity at eval time)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values are spatially reduced by ``sr_ratio`` (a strided conv).

    Used as self-attention (``context`` None) and, by EQUISeg's CMTB, as cross-attention whose
    keys/values come from other modalities' tokens.
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)

    def reduce(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, h·w, C) tokens -> (B, h·w / sr², C) key/value tokens."""
        if self.sr_ratio == 1:
            return x
        b, _, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, h, w)
        return self.sr_norm(self.sr(grid).flatten(2).transpose(1, 2))

    def forward(
        self, x: torch.Tensor, h: int, w: int, context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # x: (B, N, C); context: (B, L, C) already reduced key/value tokens; mask: (B, L) True = attend
        b, n, c = x.shape
        kv_tokens = self.reduce(x, h, w) if context is None else context
        q = self.q(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
        k, v = self.kv(kv_tokens).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, N, L)
        if context_mask is not None:
            attn = attn.masked_fill(~context_mask[:, None, None, :], float("-inf"))
        out = attn.softmax(dim=-1) @ v  # (B, heads, N, C/heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.ffn(self.norm2(x), h, w))


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlap: (B, C_in, H, W) -> (B, C, H/stride, W/stride)."""

    def __init__(self, in_ch: int, dim: int, patch: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=stride, padding=patch // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ModalityStem(nn.Module):
    """First patch embedding shared across modalities, with a per-modality 1×1 input adapter and
    per-modality LayerNorm, selected by ``modality`` (N,) int64 so the number of modalities can vary
    at run time (also in an exported ONNX graph)."""

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        self.adapter_weight = nn.Parameter(torch.eye(3).repeat(num_modalities, 1, 1))  # (M, 3, 3)
        self.adapter_bias = nn.Parameter(torch.zeros(num_modalities, 3))
        self.dim = dim
        self.proj = nn.Conv2d(3, dim, 7, stride=4, padding=3)
        self.norm_weight = nn.Parameter(torch.ones(num_modalities, dim))
        self.norm_bias = nn.Parameter(torch.zeros(num_modalities, dim))

    def forward(self, x: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, H, W), modality: (N,) -> (N, C, H/4, W/4)
        x = torch.einsum("noc,nchw->nohw", self.adapter_weight[modality], x)
        x = x + self.adapter_bias[modality][:, :, None, None]
        x = self.proj(x).permute(0, 2, 3, 1)  # (N, h, w, C)
        x = F.layer_norm(x, (self.dim,))
        x = x * self.norm_weight[modality][:, None, None, :] + self.norm_bias[modality][:, None, None, :]
        return x.permute(0, 3, 1, 2)


class MiTStage(nn.Module):
    """Patch embedding (stages 2-4; stage 1 takes its embedding from outside) + blocks + norm."""

    def __init__(self, cfg: MiTConfig, index: int, drop_paths: list[float]) -> None:
        super().__init__()
        dim = cfg.dims[index]
        self.embed = None if index == 0 else OverlapPatchEmbed(cfg.dims[index - 1], dim, 3, 2)
        self.blocks = nn.ModuleList(
            MiTBlock(dim, cfg.heads[index], cfg.sr_ratios[index], cfg.mlp_ratio, p) for p in drop_paths
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C_prev, H, W) -> (N, C, H', W'); stage 1 receives the stem's output directly
        if self.embed is not None:
            x = self.embed(x)
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, h, w)
        return self.norm(tokens).transpose(1, 2).reshape(n, c, h, w)


class MiTEncoder(nn.Module):
    """The four MiT stages after a modality stem; ``forward`` returns the four stage features."""

    def __init__(self, cfg: MiTConfig, num_modalities: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = ModalityStem(num_modalities, cfg.dims[0])
        rates = torch.linspace(0, cfg.drop_path, sum(cfg.depths)).tolist()
        starts = [sum(cfg.depths[:i]) for i in range(4)]
        self.stages = nn.ModuleList(
            MiTStage(cfg, i, rates[starts[i] : starts[i] + cfg.depths[i]]) for i in range(4)
        )
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, modality: torch.Tensor) -> list[torch.Tensor]:
        # x: (N, 3, H, W) -> [(N, C_i, H/2^(i+2), W/2^(i+2)) for i in 0..3]
        x = self.stem(x, modality)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def init_weights(module: nn.Module) -> None:
    """SegFormer's initialisation: truncated normal linears, fan-out normal convs, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
