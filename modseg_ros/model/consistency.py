"""Cross-modal consistency of each modality, from the network's own forward pass.

A late-fusion network (Any2Seg, mean fusion) encodes every modality on its own and fuses only at
the head's input, so its per-modality stage features can be fused again in other combinations for
the price of the fusion and the head alone. For each present modality m this computes

    p_m    = softmax(head(fuse({F_m})))             what m alone says (its single-modality prediction)
    p_all  = softmax(head(fuse({F_n : n present})))  what all present sensors say together
    consistency_m = mean over pixels of Σ_k sqrt(p_m,k · p_all,k)   (Bhattacharyya coefficient)

1 means m alone predicts exactly the class distribution of the fusion; a sensor whose data no
longer agree with the others (a slipped extrinsic, a smeared lens, a wrong depth scale) drops.
The reference is the fusion of every present modality (MFF already down-weights the one that
disagrees), whether or not the node fuses it into its output: the score depends on the inputs
alone, never on an earlier exclusion decision, so a sensor left out of the fusion is judged
exactly as before and can come back. A badly faulty sensor also pulls its partners' scores down
through the reference; the monitor judges one culprit at a time (core/checks/consistency.py). What the
shipped checkpoint separates, and what not, is measured in docs/health.md ("Measured").

Cost: one decode of a batch of M single-modality fusions and one of the reference, on a stride-2
subsample of the stage-1 grid (every head layer is per pixel, so this is a subsample of the
full-resolution prediction, up to the bilinear upsampling of the deeper stages). Fewer than
``MIN_MODALITIES`` present: NaN (two sensors that disagree cannot say which one is wrong).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from modseg_ros.core.checks.consistency import MIN_MODALITIES

STRIDE = 2  # subsample of the stage-1 grid the scores are computed on

Decode = Callable[[list[torch.Tensor], torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def bhattacharyya(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of Σ_k sqrt(p_k q_k): (N, K, h, w) probabilities -> (N,)."""
    return torch.sqrt(p * q + 1e-12).sum(dim=1).mean(dim=(1, 2))


def modality_consistency(decode: Decode, features: list[torch.Tensor]) -> torch.Tensor:
    """Per-modality features of one frame [(M, 1, C_i, h_i, w_i)] -> consistency (M,) in [0, 1]."""
    sub = [f[..., ::STRIDE, ::STRIDE] if i == 0 else f for i, f in enumerate(features)]
    reference, _ = decode(sub, None)  # (1, K, h, w): every present modality
    single, _ = decode([f.transpose(0, 1) for f in sub], None)  # (M, K, h, w): each one alone
    score = bhattacharyya(single.softmax(dim=1), reference.softmax(dim=1))
    enough = torch.ones_like(score).sum() >= MIN_MODALITIES  # a tensor, so that an ONNX graph keeps M dynamic
    return torch.where(enough, score, torch.full_like(score, float("nan")))


def subset_consistency(decode: Decode, features: list[torch.Tensor], subsets: list[list[int]]) -> list[torch.Tensor]:
    """``modality_consistency`` of each subset (indices into the M encoded modalities) from features
    encoded once: the scores had only that subset been present, for the price of its fusions and
    heads alone (calibration measures every set a node can be left with)."""
    return [modality_consistency(decode, [f[index] for f in features]) for index in subsets]
