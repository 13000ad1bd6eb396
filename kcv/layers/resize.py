"""Pad-to-multiple and crop-back layers, so encoder–decoders accept any input size.

An encoder that halves the resolution ``depth`` times needs sides divisible by
``2**depth``, or the skip concatenations mismatch. Padding inside the model (and cropping
the output back) keeps that detail away from users, for static and ``(None, None, 3)``
inputs alike, and exports to plain PAD / STRIDED_SLICE ops.
"""

from __future__ import annotations

import keras
from keras import ops


def _pads(size, multiple):
    """``(before, after)`` padding that brings ``size`` up to a multiple, split evenly."""
    total = (multiple - size % multiple) % multiple
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package="kcv")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads H and W (evenly on both sides) up to a multiple of ``multiple``."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        if h is not None and w is not None and h % self.multiple == 0 and w % self.multiple == 0:
            return x  # static and already aligned: no op in the exported graph
        h = ops.shape(x)[1] if h is None else h
        w = ops.shape(x)[2] if w is None else w
        (top, bottom), (left, right) = _pads(h, self.multiple), _pads(w, self.multiple)
        y = ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        if (x.shape[1] is None or x.shape[2] is None) and x.shape[-1] is not None:
            # A run-time padding makes TensorFlow forget every dimension, the channels too, and
            # the TFLite converter turns the next Conv2D into a Flex op (FlexConv2D) that LiteRT
            # cannot run; the reshape restores the static channel count.
            y = ops.reshape(y, (-1, h + top + bottom, w + left + right, x.shape[-1]))
        return y

    def compute_output_shape(self, input_shape):
        def up(d):
            return None if d is None else -(-d // self.multiple) * self.multiple
        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="kcv")
class CropToReference(keras.layers.Layer):
    """Crops ``x`` back to the H×W of ``reference``, undoing :class:`PadToMultiple`.

    Called as ``CropToReference(multiple)([x, reference])``.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        x, ref = inputs
        h, w = ref.shape[1], ref.shape[2]
        if h is not None and w is not None and x.shape[1] == h and x.shape[2] == w:
            return x
        h = ops.shape(ref)[1] if h is None else h
        w = ops.shape(ref)[2] if w is None else w
        top, left = _pads(h, self.multiple)[0], _pads(w, self.multiple)[0]
        return x[:, top:top + h, left:left + w, :]

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}
