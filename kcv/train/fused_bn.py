"""Fused batch normalisation for training on the TensorFlow backend.

Keras 3's ``BatchNormalization`` computes batch statistics with ``ops.moments`` and then
normalises with ``ops.batch_normalization``: about ten separate element-wise and reduction
kernels forward and as many backward, each a full pass over the activation. TensorFlow's
``FusedBatchNormV3`` (oneDNN on x86, cuDNN on GPUs) does the same maths in one kernel each
way. On the U-Net of ``benchmarks/train_throughput.py`` this halves the training step time
on a 2-core CPU (see ``benchmarks/RESULTS.md``): batch norm was the largest single cost.

:func:`fused_batch_norm` swaps the training-mode call of every plain Keras
``BatchNormalization`` layer for the fused kernel while the block runs, so models keep
using ``keras.layers`` only (docs/design.md §1) and nothing about the saved model changes: same
class, config, weights. Same maths: the fused op returns the Bessel-corrected variance,
which is converted back to Keras' population variance for the moving average; forward
outputs, moving statistics and gradients agree with Keras to float32 round-off
(``tests/train/test_fused_bn.py``). Inference, masked inputs, renorm, synchronized BN,
non-NHWC axes and subclasses that override ``call`` keep the Keras path.

Set ``KCV_FUSED_BN=0`` to train with Keras' own implementation.
"""

from __future__ import annotations

import contextlib
import os

import keras
import tensorflow as tf

from kcv import compat


def _fusable(layer, inputs, training, mask) -> bool:
    return (bool(training) and layer.trainable and mask is None and not layer.renorm
            and not layer.synchronized and len(inputs.shape) == 4 and layer.axis in (-1, 3)
            and inputs.shape[-1] is not None)


def _fused_call(self, inputs, training=None, mask=None):
    """``BatchNormalization.call`` with FusedBatchNormV3 in training mode."""
    if not _fusable(self, inputs, training, mask):
        return compat.KERAS_BATCHNORM_CALL(self, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    x = inputs if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.cast(inputs, tf.float32)
    gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
    beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
    n = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
    variance = variance * (n - 1.0) / tf.maximum(n, 2.0)  # back to the population variance
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum + tf.cast(mean, self.moving_mean.dtype) * (1.0 - momentum))
    self.moving_variance.assign(
        self.moving_variance * momentum + tf.cast(variance, self.moving_variance.dtype) * (1.0 - momentum))
    return tf.cast(y, self.compute_dtype)


def enabled() -> bool:
    """Fused BN is used unless ``KCV_FUSED_BN=0`` or the backend is not TensorFlow."""
    return keras.backend.backend() == "tensorflow" and os.environ.get("KCV_FUSED_BN", "1") != "0"


@contextlib.contextmanager
def fused_batch_norm(active: bool | None = None):
    """Use the fused kernel for ``BatchNormalization`` training calls inside the block.

    The swap is process-wide while the block runs (``fit`` traces its step functions
    inside it); the original method is restored on exit, also after an error.
    """
    active = enabled() if active is None else active
    if not active:
        yield
        return
    with compat.patched_batchnorm_call(_fused_call):
        yield
