"""Adaptive average pooling to a fixed output grid, for any input size.

PyTorch semantics: output cell ``i`` of ``n`` averages input rows ``floor(i·H/n)`` to
``ceil((i+1)·H/n) − 1``, so 13×13 → 6×6 uses overlapping 3-wide windows and a 1×1 map is
repeated when the input is smaller than the grid. Keras 3.15 has
``keras.layers.AdaptiveAveragePooling2D``, but it needs static H/W and fails in graph mode
when the input is smaller than the output (measured: 1×1 → 6×6 raises "Negative dimension
size"), which AlexNet's head meets at 63–94 px. Here the pooling is two matmuls with
averaging matrices built from the (possibly dynamic) input size; for static sizes the
matrices are constants, and the exported graph is RESHAPE / BATCH_MATMUL / TRANSPOSE.
"""

from __future__ import annotations

import keras
from keras import ops


def averaging_matrix(size, out: int):
    """``[out, size]`` matrix whose row ``i`` averages the inputs of adaptive bin ``i``."""
    i = ops.arange(out, dtype="int32")
    start = (i * size) // out
    end = ((i + 1) * size + out - 1) // out
    pos = ops.arange(size, dtype="int32")
    inside = ops.logical_and(pos[None, :] >= start[:, None], pos[None, :] < end[:, None])
    weights = ops.cast(inside, "float32")
    return weights / ops.sum(weights, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="kcv")
class AdaptiveAvgPool2D(keras.layers.Layer):
    """Average-pool an NHWC map to ``output_size`` (int or ``(rows, cols)``), any input size."""

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.output_size = tuple(int(s) for s in size)

    def call(self, x):
        oh, ow = self.output_size
        shape = ops.shape(x)
        h, w, c = shape[1], shape[2], x.shape[-1]
        mh = ops.cast(averaging_matrix(h, oh), x.dtype)
        mw = ops.cast(averaging_matrix(w, ow), x.dtype)
        y = ops.matmul(mh, ops.reshape(x, (-1, h, w * c)))        # [B, oh, W·C]
        y = ops.transpose(ops.reshape(y, (-1, oh, w, c)), (0, 2, 1, 3))  # [B, W, oh, C]
        y = ops.matmul(mw, ops.reshape(y, (-1, w, oh * c)))       # [B, ow, oh·C]
        return ops.transpose(ops.reshape(y, (-1, ow, oh, c)), (0, 2, 1, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}
