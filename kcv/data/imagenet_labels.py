"""The 1000 ImageNet class names (``imagenet_classes.txt`` beside this file), in
keras.applications' class order. Plain file reading, so that the TensorFlow-free runtime
(``kcv predict model.tflite``) can name the classes of a 1000-way ImageNet classifier."""

from __future__ import annotations

from pathlib import Path

CLASS_NAMES_FILE = Path(__file__).resolve().parent / "imagenet_classes.txt"
IMAGENET_CLASSES = 1000


def class_names() -> list[str]:
    """The 1000 ImageNet class names in keras.applications' class order."""
    lines = CLASS_NAMES_FILE.read_text().splitlines()
    return [line.split("\t", 1)[1] for line in lines if line and not line.startswith("#")]
