"""One calling convention for every runtime: ``runner(images float32 [N,H,W,3]) -> probs``.

:class:`~kcv.export.tflite.LiteRTRunner` (``.tflite``), :class:`~kcv.export.onnx.OnnxRunner`
(``.onnx``), :class:`KerasRunner` (``.keras`` / an in-memory model) and
:class:`SavedModelRunner` (``saved_model/``). :func:`open_runner` picks one from a path;
``kcv predict`` and ``kcv benchmark`` only ever talk to this interface.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kcv.errors import KcvError

SUFFIXES = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}


class KerasRunner:
    """A Keras inference model behind a ``tf.function`` (one trace, any batch size).

    ``model.predict`` costs ~100 ms of per-call overhead (docs/design.md §8), so single images go
    through a traced function instead.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        shape = tuple(model.input_shape[1:])
        self._fn = tf.function(lambda x: model(x, training=False), jit_compile=False,
                               input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    @property
    def input_shape(self) -> tuple:
        return tuple(self.model.input_shape[1:])

    def __call__(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        images = np.asarray(images, np.float32)
        return np.concatenate([np.asarray(self._fn(images[i:i + batch_size]))
                               for i in range(0, len(images), batch_size)]).astype(np.float32)


class SavedModelRunner(KerasRunner):
    """A SavedModel exported by kcv (``serve`` endpoint), run by TensorFlow."""

    def __init__(self, path):  # noqa: D107 — no Keras model to wrap, only the endpoint
        import tensorflow as tf

        self._loaded = tf.saved_model.load(str(path))
        self._fn = self._loaded.serve
        spec = self._fn.input_signature[0] if self._fn.input_signature else None
        self._shape = tuple(spec.shape[1:]) if spec is not None else (None, None, 3)

    @property
    def input_shape(self) -> tuple:
        return self._shape


def inference_keras(path):
    """Load a ``.keras`` file and return its inference model (softmax on the main head)."""
    import keras

    import kcv.models  # noqa: F401  (custom layers)
    from kcv.models import inference_model

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # corrupt, truncated or not a Keras archive
        raise KcvError(f"{path}: cannot load model ({type(e).__name__}: {str(e)[:200]})") from None
    return inference_model(model)


def open_runner(path, num_threads: int = 2):
    """A runner for a ``.keras``, ``.tflite`` or ``.onnx`` file or a ``saved_model/`` folder.

    A missing, unreadable or corrupt file raises :class:`KcvError` naming it.
    """
    from kcv.export.onnx import OnnxRunner
    from kcv.export.tflite import LiteRTRunner

    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return SavedModelRunner(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise KcvError(f"{path}: not a model file (expected .keras, .tflite or .onnx)")
    if not path.is_file():
        raise KcvError(f"{path}: file not found")
    if kind == "keras":
        return KerasRunner(inference_keras(path))
    try:
        return LiteRTRunner(path, num_threads) if kind == "tflite" else OnnxRunner(path, num_threads)
    except Exception as e:  # the runtimes raise ValueError / RuntimeError / their own types
        raise KcvError(f"{path}: cannot load {kind} model ({type(e).__name__}: {str(e)[:200]})") from None
