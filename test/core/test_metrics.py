import numpy as np
import pytest

from modseg_ros.core.metrics import ConfusionMatrix, emm_expected, summarise_subsets
from modseg_ros.core.types import Modality, all_subsets


def test_confusion_matrix_and_miou_match_a_hand_computation():
    label = np.array([[0, 0, 1, 255], [1, 2, 2, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 0], [1, 2, 0, 2]], dtype=np.uint8)
    cm = ConfusionMatrix(num_classes=4)
    cm.update(pred, label)
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    assert np.array_equal(cm.matrix, expected)
    # IoU: c0 1/(2+2-1)=1/3, c1 2/(2+3-2)=2/3, c2 2/(3+2-2)=2/3, c3 NaN -> 0; mean over all 4 classes
    assert cm.iou() == pytest.approx([100 / 3, 200 / 3, 200 / 3, 0.0])
    assert cm.miou() == pytest.approx(round((1 / 3 + 2 / 3 + 2 / 3) / 4 * 100, 2))
    assert cm.pixel_accuracy() == pytest.approx(round(5 / 7 * 100, 2))
    other = ConfusionMatrix(num_classes=4)
    other.update(pred, label)
    cm.merge(other)
    assert np.array_equal(cm.matrix, 2 * expected)  # one matrix over the split


def test_expected_miou_weights_subsets_by_failure_probability():
    subsets = all_subsets()
    mious = {s: (100.0 if len(s) == 4 else 0.0) for s in subsets}
    p = 0.1
    full_share = 0.9**4 / (1 - 0.1**4)  # normalised over the 15 non-empty subsets
    assert emm_expected(mious, p) == pytest.approx(round(100 * full_share, 2))
    summary = summarise_subsets({s: float(len(s)) for s in subsets})
    assert summary["avg"] == pytest.approx(round((4 * 1 + 6 * 2 + 4 * 3 + 4) / 15, 2))
    assert summary["subsets"]["CDLE"] == 4.0 and summary["subsets"]["E"] == 1.0
    assert set(summary["expected"]) == {"0.2", "0.1", "0.05"}
    assert len({s for s in subsets if Modality.CAMERA in s}) == 8
