"""Confusion-matrix metrics against hand-computed values, ignore label included."""

import numpy as np
import pytest

from kcv import metrics
from kcv.evaluation import scores


def test_confusion_matrix_iou_and_pixel_accuracy():
    y_true = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    y_pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = scores.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # IoU0 = 1/(1+1+1) ; IoU1 = 2/(2+1+0) ; IoU2 = 1/(1+0+1)
    np.testing.assert_allclose(scores.iou_per_class(cm), [1 / 3, 2 / 3, 1 / 2])
    rep = scores.segmentation_report(cm, ["a", "b", "c"])
    assert rep["val_miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert rep["val_pixel_accuracy"] == pytest.approx(4 / 6)
    assert rep["per_class_iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 1 / 2})


def test_absent_class_is_excluded_from_the_mean():
    cm = scores.confusion_matrix([0, 0, 1], [0, 0, 1], 3)
    rep = scores.segmentation_report(cm, ["a", "b", "c"])
    assert rep["per_class_iou"]["c"] is None and rep["val_miou"] == 1.0


def test_keras_metrics_match_numpy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (2, 5, 5))
    y[0, 0, :] = 255
    logits = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    pa, miou = metrics.training_metrics("segmentation", 3)
    pa.update_state(y, logits)
    miou.update_state(y, logits)
    rep = scores.segmentation_report(scores.confusion_matrix(y, logits.argmax(-1), 3), "abc")
    assert float(pa.result()) == pytest.approx(rep["val_pixel_accuracy"], rel=1e-6)
    assert float(miou.result()) == pytest.approx(rep["val_miou"], rel=1e-5)


def test_keras_pixel_accuracy_and_miou_by_hand_with_ignore():
    # 2×3 image; the two 255 pixels would be wrong if counted.
    y = np.array([[[0, 1, 255], [1, 1, 255]]])
    logits = np.zeros((1, 2, 3, 2), "float32")
    logits[0, 0, 0, 0] = logits[0, 0, 1, 0] = logits[0, 1, 0, 1] = logits[0, 1, 1, 1] = 1.0
    logits[0, 0, 2, 0] = logits[0, 1, 2, 0] = 1.0  # ignored pixels predicted 0
    pa, miou = metrics.training_metrics("segmentation", 2)
    pa.update_state(y, logits)
    miou.update_state(y, logits)
    # pred (0, 0 / 1, 1) vs true (0, 1 / 1, 1): 3 of 4 right; IoU0 = 1/2, IoU1 = 2/3
    assert float(pa.result()) == pytest.approx(3 / 4)
    assert float(miou.result()) == pytest.approx((1 / 2 + 2 / 3) / 2, rel=1e-6)
