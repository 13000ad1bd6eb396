"""Keras metric objects for training. The NumPy scores of reports (confusion matrix, IoU)
live in :mod:`kcv.evaluation.scores`.

Segmentation metrics ignore label 255 everywhere (docs/design.md §5).
"""

from __future__ import annotations

import keras
from keras import ops
from kcv.contracts import IGNORE_LABEL


@keras.saving.register_keras_serializable(package="kcv")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose argmax prediction is right (``ignore_class`` skipped)."""

    def __init__(self, name="pixel_accuracy", ignore_class=IGNORE_LABEL, **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.total = self.add_variable((), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        valid = ops.cast(ops.not_equal(y_true, self.ignore_class), "float32")
        hit = ops.cast(ops.equal(y_true, pred), "float32") * valid
        self.correct.assign_add(ops.sum(hit))
        self.total.assign_add(ops.sum(valid))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


def training_metrics(task: str, num_classes: int, soft_labels: bool = False) -> list:
    """The metrics ``fit`` tracks: accuracy/top-5 for classification; pixel accuracy and
    mean IoU (argmax of the logits, 255 ignored) for segmentation.

    ``soft_labels``: classification targets are one-hot/soft (CutMix, MixUp, label
    smoothing); accuracy compares argmaxes. The names stay ``accuracy``/``top5_accuracy``.
    """
    if task == "classification" and soft_labels:
        return [keras.metrics.CategoricalAccuracy(name="accuracy"),
                keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5_accuracy")]
    if task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes), name="top5_accuracy")]
    return [PixelAccuracy(),
            keras.metrics.MeanIoU(num_classes, name="miou", sparse_y_true=True,
                                  sparse_y_pred=False, ignore_class=IGNORE_LABEL)]


def monitor(task: str) -> str:
    """The validation metric that picks the best epoch (higher is better)."""
    return "val_accuracy" if task == "classification" else "val_miou"
