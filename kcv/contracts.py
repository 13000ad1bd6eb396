"""The names every part of kcv shares (docs/design.md §4, §5, §6), in one place.

A model, a run directory and an export are read by code far from the code that wrote
them; these constants are that contract. Change one here and every reader follows.
"""

from __future__ import annotations

# Model conventions (docs/design.md §6): the layer that emits the main head's logits, and
# the main head is the model's first output (auxiliary heads follow it).
LOGITS_LAYER = "logits"
MAIN_OUTPUT = 0

# Segmentation masks (docs/design.md §5): this label is ignored by losses, metrics and
# augmentation (borders, "don't care" regions).
IGNORE_LABEL = 255

# Choices of options that the command line declares without importing TensorFlow
# (kcv/options.py); the modules that implement them re-export these.
LOSSES = ("ce", "bce", "dice", "focal", "ce+dice")  # kcv.losses
DISTRIBUTE_MODES = ("auto", "none", "mirrored", "multiworker")  # kcv.train.distribute
CACHE_MODES = ("auto", "memory", "disk", "none")  # kcv.data.pipeline

# Run directory (docs/design.md §4).
CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"  # the best epoch, inference-ready
LAST_FILE = "last.keras"  # the last epoch with optimizer state, for --resume
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
EVAL_FILE = "eval.json"
CONFUSION_FILE = "confusion.png"
EXPORTS_DIR = "exports"
REPORT_FILE = "report.json"  # exports/report.json: what export verified and benchmark measured
REPORT_MD_FILE = "report.md"


def main_output(model):
    """The main head's output tensor of a Keras functional model (its first output)."""
    outputs = model.outputs
    return outputs[MAIN_OUTPUT] if isinstance(outputs, (list, tuple)) else outputs


def main_head_model(model):
    """``model`` with its main head as its only output (auxiliary heads dropped); ``model``
    itself when it has one output already."""
    if len(model.outputs) == 1:
        return model
    import keras

    return keras.Model(model.inputs, main_output(model), name=model.name)
