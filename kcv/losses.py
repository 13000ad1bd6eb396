"""Losses as pure functions of ``(y_true, logits)``, and the factory the training loop uses."""

from __future__ import annotations

import keras

from kcv.errors import KcvError

IGNORE_LABEL = 255
LOSSES = ("ce",)


def get_loss(name: str, task: str, label_smoothing: float = 0.0, soft_labels: bool = False):
    """The Keras loss for ``--loss name``: cross-entropy from logits.

    Sparse integer targets (255 ignored for segmentation), or, with ``soft_labels``,
    one-hot/soft targets (CutMix/MixUp, label smoothing) for classification.
    """
    if name == "ce":
        if soft_labels:
            return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
        if label_smoothing:
            raise KcvError("--label-smoothing needs one-hot targets: classification only")
        ignore = IGNORE_LABEL if task == "segmentation" else None
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore)
    raise KcvError(f"--loss '{name}': choose one of {', '.join(LOSSES)}")
