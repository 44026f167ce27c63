"""Training losses: OHEM cross-entropy (DELIVER), LSCD (Any2Seg), SGM (EQUISeg).

The LSCD and SGM equations are not public; the forms below are the documented decisions
(docs/design.md#d4-lscd-loss, docs/design.md#d8-equiseg).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from modseg_ros.core.palette import IGNORE


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, thresh: float = 0.7, min_fraction: float = 1 / 16,
                       class_weights: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """DELIVER's OhemCrossEntropy: mean CE over pixels whose loss exceeds -log(thresh), at least
    ``valid/16`` of them (the hardest). logits (B, K, H, W) at the label size, labels (B, H, W);
    ``class_weights`` (K,) scale each pixel's loss by its true class (before the selection, so a rare
    class's pixels are also kept more often)."""
    loss = F.cross_entropy(logits, labels.long(), weight=class_weights, ignore_index=IGNORE, reduction="none").flatten()
    valid = int((labels != IGNORE).sum())
    if valid == 0:
        return logits.sum() * 0.0
    n_min = max(1, int(valid * min_fraction))
    hard = loss[loss > -math.log(thresh)]
    if hard.numel() < n_min:
        hard = loss.topk(n_min).values
    return hard.mean()


def _relation_kl(teacher: torch.Tensor, student: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(softmax(teacher/τ) ‖ softmax(student/τ)) per row, for similarity rows (..., N)."""
    target = (teacher / tau).log_softmax(dim=-1)
    return F.kl_div((student / tau).log_softmax(dim=-1), target, log_target=True, reduction="none").sum(dim=-1)


def lscd_loss(
    student: torch.Tensor, present: torch.Tensor, teacher: torch.Tensor, tau: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Language-guided semantic correlation distillation (Any2Seg), as relational distillation.

    student: (S, B, D) per-modality embeddings; present: (S, B) bool; teacher: (B, T) scene
    embeddings of the text teacher. The teacher's sample × sample cosine matrix ``T`` says which
    scenes of the batch are alike in language. It is distilled into
    - intra-modal: each modality's own sample × sample matrix ``cos(s_m,b, s_m,b')``;
    - inter-modal: each modality pair's cross matrix ``cos(s_m,b, s_n,b')`` (m ≠ n), which pulls a
      scene seen by one sensor toward the same scene seen by another - the modality gap.
    Rows are softmax distributions over the present columns; the divergence is KL. Both terms are
    0 when every modality's student embedding equals the teacher's. Returns (inter, intra).
    """
    s = F.normalize(student, dim=-1)
    t = F.normalize(teacher, dim=-1)
    target = t @ t.T  # (B, B)
    zero = student.sum() * 0.0
    inter, intra, n_inter, n_intra = zero, zero, 0, 0
    for m in range(s.shape[0]):
        rows = present[m]
        if not rows.any():
            continue
        for n in range(s.shape[0]):
            cols = present[n]
            if int(cols.sum()) < 2:
                continue  # a distribution over one sample carries no relation
            sim = s[m][rows] @ s[n][cols].T  # (rows, cols)
            kl = _relation_kl(target[rows][:, cols], sim, tau).mean()
            if m == n:
                intra, n_intra = intra + kl, n_intra + 1
            else:
                inter, n_inter = inter + kl, n_inter + 1
    return inter / max(n_inter, 1), intra / max(n_intra, 1)


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GT-masked average pooling. features (S, B, C, h, w), labels (B, H, W) ->
    prototypes (S, B, K, C) and pixel counts (B, K) at the feature resolution (nearest labels)."""
    h, w = features.shape[-2:]
    small = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()  # (B, h, w)
    one_hot = F.one_hot(small.clamp(max=num_classes), num_classes + 1)[..., :num_classes].to(features.dtype)  # ignore -> none
    counts = one_hot.sum(dim=(1, 2))  # (B, K)
    sums = torch.einsum("sbchw,bhwk->sbkc", features, one_hot)
    return sums / counts.clamp(min=1.0)[None, :, :, None], counts


def sgm_loss(
    stage_features: list[torch.Tensor],
    present: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    teacher_mask: torch.Tensor,
    tau: float = 1.0,
) -> torch.Tensor:
    """EQUISeg's self-guided module as prototype distillation (RobustSeg-style, docs/design.md#d8-equiseg).

    For every sample, ``teacher_mask`` (S, B) marks the present modalities drawn as teachers this
    step, the other present ones are students. Per stage and class present in the sample, the
    teachers' mean class prototype (detached) is the target of each student's prototype:
    ``KL(softmax(p_teacher/τ) ‖ softmax(p_student/τ))`` over channels. 0 when students equal teachers.
    """
    student_mask = present & ~teacher_mask
    total, terms = stage_features[0].sum() * 0.0, 0
    for features in stage_features:
        protos, counts = class_prototypes(features, labels, num_classes)  # (S, B, K, C), (B, K)
        tm = teacher_mask.to(protos.dtype)[:, :, None, None]
        has_teacher = teacher_mask.any(dim=0)  # (B,)
        teacher = ((protos * tm).sum(dim=0) / tm.sum(dim=0).clamp(min=1.0)).detach()  # (B, K, C)
        kl = _relation_kl(teacher[None].expand_as(protos), protos, tau)  # (S, B, K)
        weight = (student_mask & has_teacher[None])[:, :, None] & (counts > 0)[None]
        if weight.any():
            total, terms = total + kl[weight].mean(), terms + 1
    return total / max(terms, 1)


def random_teacher_split(present: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """SGM's random teacher/student grouping: for each sample with n ≥ 2 present modalities, a
    uniformly random group of k ~ U{1..n-1} of them are teachers. Returns the teacher mask (S, B)."""
    s, b = present.shape
    scores = torch.rand((s, b), generator=generator).masked_fill(~present.cpu(), 2.0)
    n = present.sum(dim=0).cpu()
    k = (torch.rand(b, generator=generator) * (n - 1).clamp(min=0)).floor().long() + 1  # 1..n-1
    rank = scores.argsort(dim=0).argsort(dim=0)  # rank of each slot among the sample's slots
    teacher = (rank < k[None]) & present.cpu() & (n >= 2)[None]
    return teacher.to(present.device)
