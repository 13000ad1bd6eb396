"""Upsampling for segmentation decoders: a bilinear resize to a reference tensor's size, and the
bilinear initializer of FCN's transposed convolutions.

:class:`ResizeToReference` is the one resize every decoder uses (FCN's bilinear mode, U-Net on
a backbone, DeepLab v3+, Hypercolumns). It works for ``(None, None, 3)`` models *and* exports
them: ``keras.ops.image.resize`` (hence ``UpSampling2D(interpolation="bilinear")``) checks
``size[0] <= 0`` in Python, which raises ``OperatorNotAllowedInGraphError`` when the size is
a run-time tensor, i.e. whenever a model with unknown H×W is traced for export (measured,
Keras 3.15). So a static target size goes to ``ops.image.resize`` (one ``RESIZE_BILINEAR`` in
TFLite) and a dynamic one to a separable two-tap gather-and-lerp written in ``keras.ops``
(TFLite builtins ``RANGE``/``GATHER``/``MUL``…, ONNX ``Gather``): the same half-pixel-centre
formula as ``tf.image.resize``, cost linear in the output size.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def bilinear_kernel_1d(size: int) -> np.ndarray:
    """The 1-D bilinear upsampling filter of FCN's ``surgery.upsample_filt`` (length ``size``)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return (1 - np.abs(np.arange(size) - center) / factor).astype(np.float32)


@keras.saving.register_keras_serializable(package="kcv")
class BilinearKernel(keras.initializers.Initializer):
    """Initializer of a ``Conv2DTranspose`` kernel ``(k, k, out, in)`` to bilinear upsampling.

    Each output channel copies its own input channel through the separable bilinear filter
    (FCN's ``surgery.interp``: the filter on the diagonal, zeros elsewhere), so a transposed
    conv with kernel ``2f`` and stride ``f`` ('same' padding) starts as bilinear interpolation
    by ``f`` with half-pixel centres — identical to ``tf.image.resize`` away from the borders,
    where the transposed conv sees zeros beyond the edge (Long et al. 2015, §3.3).
    """

    def __call__(self, shape, dtype=None):
        kh, kw, out_ch, in_ch = shape
        if out_ch != in_ch:
            raise ValueError(f"a bilinear kernel maps channels one-to-one; got {in_ch} -> {out_ch}")
        filt = np.outer(bilinear_kernel_1d(kh), bilinear_kernel_1d(kw))
        kernel = np.zeros(shape, np.float32)
        kernel[:, :, np.arange(out_ch), np.arange(in_ch)] = filt[:, :, None]
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


def _lerp_axis(x, out_size, axis: int):
    """Bilinear (half-pixel centres, edges clamped) resize of ``x`` along ``axis`` to ``out_size``."""
    in_size = ops.shape(x)[axis]
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    src = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    src = ops.clip(src, 0.0, ops.cast(in_size - 1, "float32"))
    low = ops.cast(ops.floor(src), "int32")
    high = ops.minimum(low + 1, in_size - 1)
    frac = ops.cast(src - ops.cast(low, "float32"), x.dtype)
    frac = ops.reshape(frac, [-1 if a == axis else 1 for a in range(4)])
    a, b = ops.take(x, low, axis=axis), ops.take(x, high, axis=axis)
    return a + (b - a) * frac


@keras.saving.register_keras_serializable(package="kcv")
class ResizeToReference(keras.layers.Layer):
    """Bilinearly resizes ``x`` to the H×W of ``reference``: ``ResizeToReference()([x, ref])``.

    Static target sizes use ``ops.image.resize``; dynamic ones (``None`` sides) use an
    exportable gather-and-lerp with the same formula (module docstring). A 1×1 source (image
    pooling) becomes a broadcast either way, since both taps of every output read pixel 0.
    """

    def call(self, inputs):
        x, ref = inputs
        h, w = ref.shape[1], ref.shape[2]
        if h is not None and w is not None:
            if x.shape[1] == h and x.shape[2] == w:
                return x
            return ops.image.resize(x, (h, w), interpolation="bilinear")
        h = ops.shape(ref)[1] if h is None else h
        w = ops.shape(ref)[2] if w is None else w
        return _lerp_axis(_lerp_axis(x, h, 1), w, 2)

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])
