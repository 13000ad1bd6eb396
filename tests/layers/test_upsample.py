"""Bilinear transposed-conv initializer, ResizeToReference, and the ASPP/separable-conv blocks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcv.layers import BilinearKernel, ResizeToReference, aspp, separable_conv_bn
from kcv.layers.aspp import aspp_rates
from kcv.layers.upsample import bilinear_kernel_1d


def test_fcn_bilinear_filter_values():
    # FCN's surgery.upsample_filt(4): factor 2, centre 1.5 -> 1 - |x - 1.5| / 2
    np.testing.assert_allclose(bilinear_kernel_1d(4), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_kernel_1d(3), [0.5, 1.0, 0.5])


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_initialised_transposed_conv_is_bilinear_resize(factor):
    channels = 3
    x = np.random.default_rng(factor).normal(size=(1, 6, 5, channels)).astype("float32")
    up = keras.layers.Conv2DTranspose(channels, 2 * factor, strides=factor, padding="same", use_bias=False,
                                      kernel_initializer=BilinearKernel())
    got = np.asarray(up(x))
    want = tf.image.resize(x, (6 * factor, 5 * factor), method="bilinear").numpy()
    assert got.shape == want.shape
    # Identical away from the border (there the deconvolution sees zeros, resize clamps).
    m = factor // 2 + 1
    np.testing.assert_allclose(got[:, m:-m, m:-m], want[:, m:-m, m:-m], atol=1e-5)
    # Each class channel upsamples only itself: off-diagonal kernel entries are zero.
    kernel = np.asarray(up.kernel)
    off = kernel * (1 - np.eye(channels))[None, None]
    assert np.all(off == 0) and np.all(np.diagonal(kernel, axis1=2, axis2=3) > 0)


def test_bilinear_kernel_serialises_with_the_layer(tmp_path):
    inp = keras.Input((4, 4, 2))
    out = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", kernel_initializer=BilinearKernel(),
                                       trainable=False, name="up")(inp)
    model = keras.Model(inp, out)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("up").kernel_initializer, BilinearKernel)
    assert not loaded.get_layer("up").trainable
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.mark.parametrize("src,dst", [((6, 5), (24, 20)), ((37, 23), (16, 11)), ((1, 1), (9, 7))])
def test_resize_to_reference_matches_tf_image_resize_static_and_dynamic(src, dst):
    x = np.random.default_rng(1).normal(size=(2, *src, 3)).astype("float32")
    ref = np.zeros((2, *dst, 1), "float32")
    want = tf.image.resize(x, dst, method="bilinear").numpy()
    static = np.asarray(ResizeToReference()([x, ref]))
    # The dynamic path: H×W unknown while tracing, as in an exported (None, None, 3) model.
    fn = tf.function(lambda a, b: ResizeToReference()([a, b]),
                     input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, None, None, 1))],
                     autograph=False)
    dynamic = fn(x, ref).numpy()
    np.testing.assert_allclose(static, want, atol=1e-5)
    np.testing.assert_allclose(dynamic, want, atol=1e-5)


def _conv_weights(model) -> int:
    return int(sum(np.prod(w.shape) for l in model.layers
                   if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) for w in l.weights))


@pytest.mark.parametrize("k,m,n", [(3, 32, 64), (3, 256, 256), (5, 16, 8)])
def test_separable_conv_parameter_rule(k, m, n):
    inp = keras.Input((16, 16, m))
    separable = keras.Model(inp, separable_conv_bn(inp, n, k, name="sep"))
    standard = keras.Model(inp, keras.layers.Conv2D(n, k, use_bias=False)(inp))
    assert _conv_weights(separable) == k * k * m + m * n  # D_K²·M + M·N
    assert _conv_weights(standard) == k * k * m * n  # D_K²·M·N
    # The BNs after the depthwise (M channels) and the pointwise (N) conv: 4 numbers a channel.
    assert separable.count_params() == k * k * m + m * n + 4 * (m + n)


def test_aspp_rates_branches_and_dynamic_image_pooling():
    assert aspp_rates(16) == (6, 12, 18) and aspp_rates(8) == (12, 24, 36)
    inp = keras.Input((None, None, 8))
    model = keras.Model(inp, aspp(inp, filters=4, rates=aspp_rates(8), name="aspp"))
    rates = [l.dilation_rate[0] for l in model.layers if isinstance(l, keras.layers.DepthwiseConv2D)]
    assert rates == [12, 24, 36]
    assert model.get_layer("aspp_concat").output.shape[-1] == 5 * 4  # 1x1 + 3 atrous + pooling
    x = np.random.default_rng(0).normal(size=(1, 5, 7, 8)).astype("float32")
    assert model(x).shape == (1, 5, 7, 4)
    pool = keras.Model(inp, model.get_layer("aspp_pool_resize").output)(x)
    np.testing.assert_allclose(pool, np.broadcast_to(np.asarray(pool)[:, :1, :1], pool.shape))
