"""The fused batch-norm training kernel computes what Keras' BatchNormalization computes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcv.compat import KERAS_BATCHNORM_CALL
from kcv.train.fused_bn import fused_batch_norm


def bn_step(x, fused, dtype="float32", **kwargs):
    keras.utils.set_random_seed(0)
    layer = keras.layers.BatchNormalization(momentum=0.5, dtype=dtype, **kwargs)
    layer.build(x.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, x.shape[-1]))
    layer.beta.assign(np.linspace(-1, 1, x.shape[-1]))
    xt = tf.constant(x)
    with fused_batch_norm(fused), tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 3)
    grads = tape.gradient(loss, [xt, layer.gamma, layer.beta])
    return [np.asarray(tf.cast(v, tf.float32)) for v in
            (y, layer.moving_mean, layer.moving_variance, *grads)]


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("mixed_float16", 2e-2), ("mixed_bfloat16", 5e-2)])
def test_fused_matches_keras_forward_statistics_and_gradients(dtype, tol):
    x = (np.random.default_rng(0).normal(2.0, 3.0, (4, 6, 6, 5))).astype("float32")
    ref, fused = bn_step(x, False, dtype), bn_step(x, True, dtype)
    for name, a, b in zip(("y", "moving_mean", "moving_variance", "dx", "dgamma", "dbeta"), ref, fused):
        scale = max(np.abs(a).max(), 1e-6)
        assert np.abs(a - b).max() / scale < tol, name


def test_other_cases_keep_the_keras_path_and_the_patch_is_undone():
    x = np.random.default_rng(1).normal(size=(3, 4, 7)).astype("float32")  # rank 3: Keras path
    a, b = bn_step(x, False), bn_step(x, True)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)
    with fused_batch_norm(True):
        assert keras.layers.BatchNormalization.call is not KERAS_BATCHNORM_CALL
    assert keras.layers.BatchNormalization.call is KERAS_BATCHNORM_CALL
