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


def _bce(z, y):
    """−[y·log σ(z) + (1−y)·log(1−σ(z))] in float64."""
    p = 1 / (1 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_binary_cross_entropy_is_one_sigmoid_per_class():
    # pixel 0: z = (0, ln 3), label 1 → σ = (1/2, 3/4); pixel 1: z = (0, 0), label 0
    b0 = (_bce(0.0, 0) + _bce(math.log(3), 1)) / 2  # mean over the two classes
    b1 = (_bce(0.0, 1) + _bce(0.0, 0)) / 2
    assert float(losses.binary_cross_entropy(LABELS, LOGITS)) == pytest.approx((b0 + b1) / 2, rel=1e-6)
    assert float(losses.binary_cross_entropy(LABELS, LOGITS, [1.0, 3.0])) == pytest.approx(
        (3 * b0 + b1) / 4, rel=1e-6)
    # unlike the softmax, adding a constant to every logit changes it
    assert float(losses.binary_cross_entropy(LABELS, LOGITS + 5)) > 2 * (b0 + b1) / 2
    # no overflow far out in the tails
    big = np.array([[80.0, -80.0]], "float32")
    assert float(losses.binary_cross_entropy(np.array([0]), big)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.binary_cross_entropy(np.array([1]), big)) == pytest.approx(80.0, rel=1e-5)


def test_soft_binary_cross_entropy_matches_sparse_and_smooths_like_ce():
    logits = np.array([[0.0, math.log(3), -1.0], [2.0, 0.0, 0.5]], "float32")
    labels = np.array([1, 0])
    onehot = np.eye(3, dtype="float32")[labels]
    soft = losses.get_loss("bce", "classification", soft_labels=True)
    assert float(soft(onehot, logits)) == pytest.approx(float(losses.binary_cross_entropy(labels, logits)), rel=1e-6)
    eps = 0.3
    y = onehot * (1 - eps) + eps / 3  # the categorical convention, not Keras' binary ε/2
    want = np.mean([[_bce(float(z), float(t)) for z, t in zip(zr, yr)] for zr, yr in zip(logits, y)])
    smoothed = losses.get_loss("bce", "classification", label_smoothing=eps, soft_labels=True)
    assert float(smoothed(onehot, logits)) == pytest.approx(want, rel=1e-5)
    again = losses.SoftBinaryCrossEntropy.from_config(smoothed.get_config())
    assert float(again(onehot, logits)) == pytest.approx(want, rel=1e-5)


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


# Knowledge distillation (Hinton et al. 2015) on hand-made logits. With T = 2, teacher logits
# (0, 2 ln 3) soften to p = (1/4, 3/4) and student logits (0, 2 ln 2) to q = (1/3, 2/3).
# (float32 sums: 1e-5 relative tolerance)
T = 2.0
TEACHER = np.array([[0.0, 2 * math.log(3)], [0.0, 0.0]], "float32")
STUDENT = np.array([[0.0, 2 * math.log(2)], [0.0, 0.0]], "float32")
KL0 = 0.25 * math.log(0.25 / (1 / 3)) + 0.75 * math.log(0.75 / (2 / 3))  # KL(p || q), sample 0


def test_kl_distillation_includes_t_squared():
    # sample 1: teacher = student → KL 0; mean over the two samples, times T² = 4
    want = T**2 * (KL0 + 0.0) / 2
    assert float(losses.kl_distillation(TEACHER, STUDENT, T)) == pytest.approx(want, rel=1e-5)
    assert float(losses.kl_distillation(TEACHER, TEACHER, T)) == pytest.approx(0.0, abs=1e-7)
    # T = 1: the raw logits, p = softmax(0, 2 ln 3) = (1/10, 9/10), q = (1/5, 4/5)
    kl1 = 0.1 * math.log(0.1 / 0.2) + 0.9 * math.log(0.9 / 0.8)
    assert float(losses.kl_distillation(TEACHER, STUDENT, 1.0)) == pytest.approx(kl1 / 2, rel=1e-5)


def test_distillation_formula_unlabelled_samples_get_kl_only():
    labels = np.array([1, 255], "int32")  # sample 1 has no label
    alpha = 0.3
    # CE over the labelled sample at T = 1: −ln softmax(0, 2 ln 2)[1] = −ln(4/5)
    want = alpha * -math.log(0.8) + (1 - alpha) * T**2 * KL0 / 2
    got = losses.distillation(labels, STUDENT, TEACHER, temperature=T, alpha=alpha)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_distillation_is_pixel_wise_for_segmentation():
    # the same two "samples" as two pixels of a 1×1×2 map: the same means
    labels = np.array([[[1, 255]]], "int32")
    got = losses.distillation(labels, STUDENT[None, None], TEACHER[None, None], temperature=T, alpha=0.3)
    assert float(got) == pytest.approx(0.3 * -math.log(0.8) + 0.7 * T**2 * KL0 / 2, rel=1e-5)


def test_kl_of_a_confident_teacher_is_exact():
    # p(class 1) = e^-60 underflows in float32; its term is 0, not clipped to 1e-7 · log(...)
    teacher = np.array([[60.0, 0.0]], "float32")
    student = np.array([[0.0, 0.0]], "float32")
    assert float(losses.kl_distillation(teacher, student, 1.0)) == pytest.approx(math.log(2), rel=1e-5)
