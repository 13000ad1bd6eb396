"""Losses as pure functions of ``(y_true, logits)``, and the factory the training loop uses.

Segmentation labels equal to 255 are ignored by every loss (docs/design.md §5). Logits are cast to
float32 first so the losses are safe under mixed precision.
"""

from __future__ import annotations

import keras
from keras import ops

from kcv.errors import KcvError
from kcv.contracts import IGNORE_LABEL

from kcv.contracts import LOSSES  # noqa: E402,F401  (the names, declared without TensorFlow)


def _flatten(y_true, logits):
    """``(labels int32 [P], logits float32 [P, C], valid float32 [P])`` over all pixels."""
    logits = ops.cast(logits, "float32")
    c = ops.shape(logits)[-1]
    logits = ops.reshape(logits, (-1, c))
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    valid = ops.cast(ops.not_equal(labels, IGNORE_LABEL), "float32")
    labels = ops.where(ops.equal(labels, IGNORE_LABEL), 0, labels)  # any valid index; masked out
    return labels, logits, valid


def _class_weight(labels, class_weights, valid):
    if class_weights is None:
        return valid
    w = ops.convert_to_tensor(class_weights, dtype="float32")
    return ops.take(w, labels) * valid


def cross_entropy(y_true, logits, class_weights=None):
    """Mean sparse cross-entropy over labelled pixels/samples, optionally class-weighted
    (weighted mean: Σ w_y·CE / Σ w_y, as PyTorch's ``CrossEntropyLoss(weight=...)``)."""
    labels, logits, valid = _flatten(y_true, logits)
    ce = -ops.take_along_axis(ops.log_softmax(logits, axis=-1), labels[:, None], axis=-1)[:, 0]
    w = _class_weight(labels, class_weights, valid)
    return ops.sum(ce * w) / ops.maximum(ops.sum(w), 1e-8)


def _sigmoid_ce(y, logits):
    """Mean over the class axis of −[y·log σ(z) + (1−y)·log(1−σ(z))], written as
    softplus(z) − y·z so that large |z| does not overflow."""
    return ops.mean(ops.softplus(logits) - y * logits, axis=-1)


def binary_cross_entropy(y_true, logits, class_weights=None):
    """One-vs-rest logistic loss: a sigmoid per class, Σ_c [softplus(z_c) − y_c·z_c] / C with
    y the one-hot label, mean over labelled pixels/samples (weighted as :func:`cross_entropy`).

    Oquab et al., "Is object localization for free?", CVPR 2015, train with it: each class
    score must be high on its own evidence and low everywhere else, rather than only higher
    than the other classes' as under the softmax. The mean over classes is Keras'
    ``BinaryCrossentropy`` convention (the paper sums; that only rescales by C).
    """
    labels, logits, valid = _flatten(y_true, logits)
    bce = _sigmoid_ce(ops.one_hot(labels, ops.shape(logits)[-1]), logits)
    w = _class_weight(labels, class_weights, valid)
    return ops.sum(bce * w) / ops.maximum(ops.sum(w), 1e-8)


def soft_binary_cross_entropy(targets, logits, label_smoothing: float = 0.0):
    """:func:`binary_cross_entropy` per sample against dense targets ``[B, C]`` (one-hot,
    CutMix/MixUp mixtures, soft pseudo-labels), smoothed to y·(1−ε) + ε/C as the categorical
    losses are."""
    logits = ops.cast(logits, "float32")
    y = ops.cast(targets, "float32")
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / ops.cast(ops.shape(logits)[-1], "float32")
    return _sigmoid_ce(y, logits)  # per sample; Keras takes the mean


def focal(y_true, logits, gamma: float = 2.0, class_weights=None):
    """Focal loss (Lin et al. 2017, arXiv:1708.02002): −(1−p_t)^γ · log p_t, mean over
    labelled pixels; ``class_weights`` play the role of α."""
    labels, logits, valid = _flatten(y_true, logits)
    logp = ops.take_along_axis(ops.log_softmax(logits, axis=-1), labels[:, None], axis=-1)[:, 0]
    loss = -((1.0 - ops.exp(logp)) ** gamma) * logp
    w = _class_weight(labels, class_weights, valid)
    return ops.sum(loss * w) / ops.maximum(ops.sum(w), 1e-8)


def soft_dice(y_true, logits, smooth: float = 1.0, class_weights=None):
    """Soft Dice loss (Milletari et al. 2016, V-Net): 1 − mean over classes of
    (2·Σ p·g + s) / (Σ p + Σ g + s), summed over the labelled pixels of the batch."""
    labels, logits, valid = _flatten(y_true, logits)
    probs = ops.softmax(logits, axis=-1) * valid[:, None]
    onehot = ops.one_hot(labels, ops.shape(logits)[-1]) * valid[:, None]
    inter = ops.sum(probs * onehot, axis=0)
    denom = ops.sum(probs, axis=0) + ops.sum(onehot, axis=0)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    if class_weights is None:
        return 1.0 - ops.mean(dice)
    w = ops.convert_to_tensor(class_weights, dtype="float32")
    return 1.0 - ops.sum(dice * w) / ops.sum(w)


def kl_distillation(teacher_logits, student_logits, temperature: float = 1.0):
    """Hinton et al. 2015 (arXiv:1503.02531) soft-target term:
    T²·KL(softmax(teacher/T) ‖ softmax(student/T)), mean over samples (or pixels).

    The KL is summed over the class axis (the last) and computed from log-softmaxes, so a
    teacher probability that underflows to 0 contributes exactly 0 (Keras' ``KLDivergence``
    clips probabilities to 1e-7 instead). The T² factor keeps the gradient magnitude of
    this term independent of T (the paper's section 2).
    """
    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    log_p = ops.log_softmax(t, axis=-1)
    kl = ops.sum(ops.exp(log_p) * (log_p - ops.log_softmax(s, axis=-1)), axis=-1)
    return (temperature * temperature) * ops.mean(kl)


def distillation(y_true, student_logits, teacher_logits, temperature: float, alpha: float,
                 class_weights=None):
    """Knowledge-distillation loss (Hinton et al. 2015):
    α·CE(labels, student) + (1−α)·T²·KL(softmax(teacher/T) ‖ softmax(student/T)).

    Samples (classification) or pixels (segmentation) labelled 255 have no label: they
    contribute only the KL term, which is how unlabeled images take part. The CE is the
    mean over labelled samples/pixels, the KL the mean over all of them.
    """
    ce = cross_entropy(y_true, student_logits, class_weights)
    return alpha * ce + (1.0 - alpha) * kl_distillation(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="kcv")
class KcvLoss(keras.losses.Loss):
    """A Keras wrapper of the pure losses above, selected by ``kind`` (``ce``, ``bce``,
    ``dice``, ``focal``, ``ce+dice``), with optional per-class weights."""

    def __init__(self, kind: str = "ce", class_weights=None, gamma: float = 2.0, name=None, **kwargs):
        # "+" is not allowed in a TensorFlow name scope ("kcv_ce+dice" fails at the first step)
        super().__init__(name=name or f"kcv_{kind.replace('+', '_')}", **kwargs)
        if kind not in LOSSES:
            raise KcvError(f"--loss '{kind}': choose one of {', '.join(LOSSES)}")
        self.kind = kind
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        cw = self.class_weights
        if self.kind == "ce":
            return cross_entropy(y_true, y_pred, cw)
        if self.kind == "bce":
            return binary_cross_entropy(y_true, y_pred, cw)
        if self.kind == "focal":
            return focal(y_true, y_pred, self.gamma, cw)
        if self.kind == "dice":
            return soft_dice(y_true, y_pred, class_weights=cw)
        return cross_entropy(y_true, y_pred, cw) + soft_dice(y_true, y_pred, class_weights=cw)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "class_weights": self.class_weights,
                "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="kcv")
class SoftBinaryCrossEntropy(keras.losses.Loss):
    """Keras wrapper of :func:`soft_binary_cross_entropy` (``--loss bce`` with soft targets)."""

    def __init__(self, label_smoothing: float = 0.0, name="kcv_bce_soft", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        return soft_binary_cross_entropy(y_true, y_pred, self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def get_loss(name: str, task: str, class_weights=None, label_smoothing: float = 0.0,
             soft_labels: bool = False):
    """The Keras loss for ``--loss name``.

    ``ce``, ``bce`` and ``focal`` are the classification losses; unweighted ``ce`` is Keras'
    sparse cross-entropy, everything else :class:`KcvLoss`, which ignores label 255. With
    ``soft_labels`` (classification targets one-hot or mixed by CutMix/MixUp, label
    smoothing) the categorical (for ``bce``: binary) Keras losses are used instead; label
    smoothing ε then gives targets y·(1−ε) + ε/C, as for ``ce``.
    """
    if name not in LOSSES:
        raise KcvError(f"--loss '{name}': choose one of {', '.join(LOSSES)}")
    if task == "classification" and name in ("dice", "ce+dice"):
        raise KcvError(f"--loss {name}: Dice is a segmentation loss; use ce or focal")
    if soft_labels:
        if class_weights is not None:
            raise KcvError("class weights cannot be combined with soft labels "
                           "(cutmix/mixup augmentation or --label-smoothing)")
        if name == "focal":
            return keras.losses.CategoricalFocalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
        if name == "bce":
            return SoftBinaryCrossEntropy(label_smoothing)
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    if label_smoothing:
        raise KcvError("--label-smoothing needs one-hot targets: classification only")
    if task == "classification":
        if name == "ce" and class_weights is None:
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return KcvLoss(name, class_weights)
