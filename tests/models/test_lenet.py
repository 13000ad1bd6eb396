"""LeNet-5 against the paper's layer-by-layer parameter counts (section II-B).

Convention: on a 32×32 grayscale input, C1–F6 have 156 + 12 + 1,516 + 32 + 48,120 + 10,164 =
60,000 trainable parameters, the paper's figure; kcv's linear output (instead of fixed RBF
units) adds 85·classes. No BatchNorm: total = trainable.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import kcv
from kcv.models.classification.lenet import C3_TABLE, scaled_tanh
from kcv.registry import get_spec

PAPER = {"lenet5_c1": 156, "lenet5_s2_scale": 12, "lenet5_c3_conv": 1516, "lenet5_s4_scale": 32,
         "lenet5_c5": 48120, "lenet5_f6": 10164}


def test_per_layer_parameter_counts_match_the_paper():
    model = kcv.create_model("lenet5", 10, (32, 32, 1))
    got = {name: model.get_layer(name).count_params() for name in PAPER}
    assert got == PAPER and sum(got.values()) == 60_000 == get_spec("lenet5").reference["params"]
    assert model.count_params() == 60_000 + 84 * 10 + 10
    assert model.get_layer("lenet5_c5").output.shape[1:] == (1, 1, 120)


def test_c3_connection_table_is_a_masked_dense_convolution(rng):
    assert sum(len(r) for r in C3_TABLE) == 60
    model = kcv.create_model("lenet5", 10, (32, 32, 3))
    layer = model.get_layer("lenet5_c3_conv")
    kernel = np.asarray(layer.kernel).reshape(5, 5, 60)
    dense, n = np.zeros((5, 5, 6, 16), np.float32), 0
    for j, row in enumerate(C3_TABLE):
        for i in row:
            dense[:, :, i, j] = kernel[:, :, n]
            n += 1
    x = rng.normal(size=(2, 14, 14, 6)).astype("float32")
    want = tf.nn.conv2d(x, dense, 1, "VALID").numpy() + np.asarray(layer.bias)
    np.testing.assert_allclose(np.asarray(layer(x)), want, atol=1e-5)
    full = kcv.create_model("lenet5", 10, (32, 32, 1), connection_table=False)
    assert full.get_layer("lenet5_c3").count_params() == 2416


def test_squashing_function():
    assert float(scaled_tanh(np.float32(1.0))) == pytest.approx(1.0, abs=2e-4)
    assert float(scaled_tanh(np.float32(100.0))) == pytest.approx(1.7159, abs=1e-4)
