"""AdaptiveAvgPool2D against a NumPy transcription of PyTorch's adaptive_avg_pool2d bins."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kcv.layers import AdaptiveAvgPool2D


def reference(x, out):
    b, h, w, c = x.shape
    y = np.zeros((b, out, out, c), np.float64)
    for i in range(out):
        for j in range(out):
            h0, h1 = i * h // out, -(-(i + 1) * h // out)
            w0, w1 = j * w // out, -(-(j + 1) * w // out)
            y[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return y


@pytest.mark.parametrize("hw", [(13, 13), (6, 6), (1, 1), (2, 3), (15, 7)])
def test_matches_pytorch_bins_including_inputs_smaller_than_the_grid(hw, rng):
    x = rng.normal(size=(2, *hw, 5)).astype("float32")
    np.testing.assert_allclose(AdaptiveAvgPool2D(6)(x), reference(x, 6), atol=1e-6)


def test_dynamic_input_size_and_round_trip(rng):
    inp = keras.Input((None, None, 4))
    model = keras.Model(inp, AdaptiveAvgPool2D((3, 2))(inp))
    fn = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 4))])
    x = rng.normal(size=(1, 9, 5, 4)).astype("float32")
    got = np.asarray(fn(x))
    assert got.shape == (1, 3, 2, 4)
    again = keras.layers.deserialize(keras.layers.serialize(AdaptiveAvgPool2D((3, 2))))
    assert again.output_size == (3, 2)
    np.testing.assert_allclose(got, np.asarray(again(x)), atol=1e-6)
