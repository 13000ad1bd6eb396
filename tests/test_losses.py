"""Losses against hand-computed values, ignore label included."""

import math

import numpy as np
import pytest

from kcv import losses
from kcv.errors import KcvError

# Two pixels, two classes. Pixel 0: logits (0, ln 3) → p = (1/4, 3/4), label 1.
# Pixel 1: logits (0, 0) → p = (1/2, 1/2), label 0. A third pixel is ignored (255).
LOGITS = np.array([[[[0.0, math.log(3)], [0.0, 0.0], [9.0, -9.0]]]], "float32")  # [1, 1, 3, 2]
LABELS = np.array([[[1, 0, 255]]], "int32")


def test_cross_entropy_ignores_255():
    want = (-math.log(0.75) - math.log(0.5)) / 2
    assert float(losses.cross_entropy(LABELS, LOGITS)) == pytest.approx(want, rel=1e-6)


def test_class_weighted_cross_entropy_is_a_weighted_mean():
    w = [1.0, 3.0]  # pixel 0 (class 1) weight 3, pixel 1 (class 0) weight 1
    want = (3 * -math.log(0.75) + 1 * -math.log(0.5)) / 4
    assert float(losses.cross_entropy(LABELS, LOGITS, w)) == pytest.approx(want, rel=1e-6)


def test_focal():
    want = (-(0.25**2) * math.log(0.75) - (0.5**2) * math.log(0.5)) / 2
    assert float(losses.focal(LABELS, LOGITS, gamma=2.0)) == pytest.approx(want, rel=1e-6)
    # gamma 0 is cross-entropy
    assert float(losses.focal(LABELS, LOGITS, gamma=0.0)) == pytest.approx(
        float(losses.cross_entropy(LABELS, LOGITS)), rel=1e-6)


def test_soft_dice():
    # class 0: p = (1/4, 1/2), g = (0, 1): inter 1/2, Σp 3/4, Σg 1
    # class 1: p = (3/4, 1/2), g = (1, 0): inter 3/4, Σp 5/4, Σg 1
    d0 = (2 * 0.5 + 1) / (0.75 + 1 + 1)
    d1 = (2 * 0.75 + 1) / (1.25 + 1 + 1)
    want = 1 - (d0 + d1) / 2
    assert float(losses.soft_dice(LABELS, LOGITS)) == pytest.approx(want, rel=1e-6)


def test_combined_and_wrapper():
    loss = losses.get_loss("ce+dice", "segmentation")
    want = float(losses.cross_entropy(LABELS, LOGITS)) + float(losses.soft_dice(LABELS, LOGITS))
    assert float(loss(LABELS, LOGITS)) == pytest.approx(want, rel=1e-6)
    again = losses.KcvLoss.from_config(loss.get_config())
    assert float(again(LABELS, LOGITS)) == pytest.approx(want, rel=1e-6)


def test_perfect_prediction_has_near_zero_loss():
    logits = np.array([[[[20.0, -20.0], [-20.0, 20.0]]]], "float32")
    labels = np.array([[[0, 1]]], "int32")
    for kind in losses.LOSSES:
        assert float(losses.KcvLoss(kind)(labels, logits)) < 1e-3, kind


def test_bad_loss_names():
    with pytest.raises(KcvError, match="--loss 'hinge'"):
        losses.get_loss("hinge", "segmentation")
    with pytest.raises(KcvError, match="segmentation loss"):
        losses.get_loss("dice", "classification")


def test_class_weighted_dice_and_focal():
    # Dice: per-class scores d0, d1 as in test_soft_dice, averaged with weights (1, 3).
    d0 = (2 * 0.5 + 1) / (0.75 + 1 + 1)
    d1 = (2 * 0.75 + 1) / (1.25 + 1 + 1)
    want = 1 - (1 * d0 + 3 * d1) / 4
    assert float(losses.soft_dice(LABELS, LOGITS, class_weights=[1.0, 3.0])) == pytest.approx(want, rel=1e-6)
    # Focal: weighted mean of the per-pixel terms; the ignored pixel weighs nothing.
    f1, f0 = -(0.25**2) * math.log(0.75), -(0.5**2) * math.log(0.5)
    want = (3 * f1 + 1 * f0) / 4
    assert float(losses.focal(LABELS, LOGITS, gamma=2.0, class_weights=[1.0, 3.0])) == pytest.approx(want, rel=1e-6)


def test_ignored_pixels_do_not_move_any_loss():
    # Changing the logits of the 255 pixel (third) changes nothing, whatever they are.
    other = LOGITS.copy()
    other[0, 0, 2] = [-50.0, 50.0]
    for kind in losses.LOSSES:
        a, b = float(losses.KcvLoss(kind)(LABELS, LOGITS)), float(losses.KcvLoss(kind)(LABELS, other))
        assert a == pytest.approx(b, rel=1e-6), kind
