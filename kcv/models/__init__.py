"""Model families and the conversion from a training model to an inference model."""

from __future__ import annotations

import keras

import kcv.layers  # noqa: F401  (custom layers must be registered before any load)
from kcv.contracts import main_output
from kcv.models import classification, segmentation  # noqa: F401  (runs @register)


def inference_model(model: keras.Model) -> keras.Model:
    """The deployable model: the main output only (auxiliary heads dropped), then softmax.

    Training models output logits, first output = main head (docs/design.md §6); the model that
    ``kcv export`` writes and ``kcv predict`` runs ends in a softmax over the last axis.
    """
    main = main_output(model)
    probs = keras.layers.Softmax(axis=-1, name="probs", dtype="float32")(main)
    return keras.Model(model.inputs[0], probs, name=f"{model.name}_inference")
