"""Image resizing without TensorFlow, identical to the training pipeline's.

kcv resizes with ``tf.image.resize(method="bilinear", antialias=True)`` and rounds to
uint8 (:func:`kcv.data.pipeline` and, before, ``kcv predict``). A board running only
LiteRT or onnxruntime has no TensorFlow, and Pillow's or OpenCV's bilinear filters
differ from TensorFlow's (other kernel support when downscaling, other rounding), which
would make an edge prediction see a different image than validation did.

This is TensorFlow's ``ScaleAndTranslate`` kernel (``scale_and_translate_op.cc``) with
the triangle kernel, ported to numpy in float32: for each output pixel the sample point
``(x + 0.5) / scale`` in input coordinates, a triangle of half-width ``max(1/scale, 1)``
input pixels (antialiasing widens it when downscaling), weights normalised to sum 1;
along the height first, then the width, accumulated in the same order. ``tests/runtime`` checks it
against ``tf.image.resize`` pixel for pixel after rounding.
"""

from __future__ import annotations

import numpy as np


def _spans(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts [out], weights [out, span])`` of the antialiased triangle filter."""
    scale = np.float32(out_size) / np.float32(in_size)
    inv_scale = np.float32(1.0 / np.float64(scale))  # C++: `const float inv_scale = 1.0 / scale;`
    kernel_scale = max(inv_scale, np.float32(1.0))
    span = min(2 * int(np.ceil(kernel_scale)) + 1, in_size)
    one_over = np.float32(1.0) / kernel_scale
    starts = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, span), np.float32)
    for x in range(out_size):
        sample = (np.float32(x) + np.float32(0.5)) * inv_scale
        lo = int(np.ceil(sample - kernel_scale - np.float32(0.5)))
        hi = int(np.floor(sample + kernel_scale - np.float32(0.5)))
        lo, hi = min(max(lo, 0), in_size - 1), min(max(hi, 0), in_size - 1) + 1
        src = np.arange(lo, hi, dtype=np.float32)
        w = np.maximum(np.float32(0), np.float32(1) - np.abs((src + np.float32(0.5) - sample) * one_over))
        total = np.float32(0)
        for v in w:  # sequential float32 sum, as the C++ loop
            total = np.float32(total + v)
        starts[x] = lo
        weights[x, :len(w)] = w * (np.float32(1) / total)
    return starts, weights


def _gather(image: np.ndarray, starts: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Resample ``image`` (float32) along ``axis`` with the spans; sums in span order."""
    moved = np.moveaxis(image, axis, 0)
    out = np.zeros((len(starts),) + moved.shape[1:], np.float32)
    n = moved.shape[0]
    for i in range(weights.shape[1]):
        idx = np.minimum(starts + i, n - 1)
        w = weights[:, i].reshape((-1,) + (1,) * (moved.ndim - 1))
        out += w * moved[idx]
    return np.moveaxis(out, 0, axis)


def resize_bilinear_aa(image: np.ndarray, size) -> np.ndarray:
    """``tf.image.resize(image, size, "bilinear", antialias=True)`` in numpy: float32
    ``[H, W, C]`` from an ``[h, w, C]`` array."""
    h, w = (size, size) if isinstance(size, int) else size
    x = np.asarray(image, np.float32)
    col_starts, col_weights = _spans(x.shape[1], w)
    row_starts, row_weights = _spans(x.shape[0], h)
    # Along the height first, then the width: the other order differs from TensorFlow in
    # the last bit of half the pixels, enough to flip a rounding now and then.
    x = _gather(x, row_starts, row_weights, axis=0)
    return _gather(x, col_starts, col_weights, axis=1)


def resize_to_uint8(image: np.ndarray, size) -> np.ndarray:
    """:func:`resize_bilinear_aa`, rounded half to even and clipped to uint8, as kcv's
    pipeline does (``tf.round``, ``tf.clip_by_value``, ``tf.cast``)."""
    return np.clip(np.round(resize_bilinear_aa(image, size)), 0, 255).astype(np.uint8)
