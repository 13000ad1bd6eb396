"""Losses as pure functions of ``(y_true, logits)``, and the factory the training loop uses."""

from __future__ import annotations

import keras

from kcv.errors import KcvError

IGNORE_LABEL = 255
LOSSES = ("ce",)


def get_loss(name: str, task: str):
    """The Keras loss for ``--loss name``: sparse cross-entropy from logits (255 ignored
    for segmentation)."""
    if name == "ce":
        ignore = IGNORE_LABEL if task == "segmentation" else None
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore)
    raise KcvError(f"--loss '{name}': choose one of {', '.join(LOSSES)}")
