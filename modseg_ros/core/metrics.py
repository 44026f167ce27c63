"""Segmentation metrics exactly as DELIVER's ``semseg/metrics.py``, and the robustness summaries of
the missing-modality benchmark (docs/design.md#d2-evaluation-protocol, #d12-reporting).

- one confusion matrix accumulated over the whole split (pixels with label 255 are skipped);
- ``IoU_c = TP / (TP + FP + FN)``, a NaN IoU (class absent from labels and predictions) counts as 0
  and the mean is taken over **all** classes; reported ×100.
- EMM: ``Avg`` = plain mean of the 15 subset mIoUs; ``E(p)`` = mean weighted by the probability
  ``p^k (1-p)^(4-k)`` of that subset when each modality fails independently with probability p
  (k = number of missing modalities), normalised over the 15 non-empty subsets.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from modseg_ros.core.palette import IGNORE, NUM_CLASSES
from modseg_ros.core.types import MODALITIES, Modality, subset_name


class ConfusionMatrix:
    """Rows = ground truth, columns = prediction, int64 counts."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        keep = label != IGNORE
        gt = label[keep].astype(np.int64)
        pred = prediction[keep].astype(np.int64)
        inside = (gt < self.num_classes) & (pred < self.num_classes)
        idx = gt[inside] * self.num_classes + pred[inside]
        self.matrix += np.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """Per-class IoU ×100, NaN -> 0."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = tp / union
        return np.nan_to_num(iou, nan=0.0) * 100.0

    def miou(self) -> float:
        return round(float(self.iou().mean()), 2)

    def present_miou(self) -> float:
        """mIoU (%) over the classes present in the ground truth or the predictions; NaN if none
        (``miou`` averages all classes, absent ones as 0, as DELIVER does)."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        present = union > 0
        return float((tp[present] / union[present]).mean() * 100.0) if present.any() else math.nan

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return round(float(np.diag(self.matrix).sum() / total * 100.0), 2) if total else 0.0

    def f1(self) -> np.ndarray:
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(axis=0) + self.matrix.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(2 * tp / denom, nan=0.0) * 100.0


def subset_probability(subset: Iterable[Modality], p: float) -> float:
    k = len(MODALITIES) - len(set(subset))
    return p**k * (1.0 - p) ** (len(MODALITIES) - k)


def emm_average(miou_by_subset: Mapping[str, float]) -> float:
    return round(float(np.mean(list(miou_by_subset.values()))), 2)


def emm_expected(miou_by_subset: Mapping[tuple[Modality, ...], float], p: float) -> float:
    """E(p): subset mIoUs weighted by each subset's probability under independent failures."""
    weights = np.array([subset_probability(s, p) for s in miou_by_subset])
    values = np.array(list(miou_by_subset.values()))
    return round(float((weights * values).sum() / weights.sum()), 2)


def summarise_subsets(miou_by_subset: Mapping[tuple[Modality, ...], float], ps: Sequence[float] = (0.2, 0.1, 0.05)) -> dict:
    """{'subsets': {name: mIoU}, 'avg': EMM-Avg, 'E(p)': {p: value}}."""
    return {
        "subsets": {subset_name(s): v for s, v in miou_by_subset.items()},
        "avg": emm_average({subset_name(s): v for s, v in miou_by_subset.items()}),
        "expected": {str(p): emm_expected(miou_by_subset, p) for p in ps},
    }
