"""EfficientNet-B0…B7: compound scaling, MBConv + SE, stochastic depth, pinned counts.

Convention: trainable params are compared with torchvision's efficientnet_b0…b7 (no BN
moving statistics there) and match exactly; the total with Keras' BN moving mean/variance
is keras.applications' count minus the 7 non-trainable weights of its input
Normalization layer (kcv normalises with a weightless Rescaling).
"""

from __future__ import annotations

import numpy as np
import pytest

import kcv
from kcv.models.classification.efficientnet import SCALING, round_filters
from kcv.registry import get_spec
from tests.models.taps import check_taps, trainable_count

# name: (trainable = torchvision, keras.applications total)
PINNED = {
    "efficientnet_b0": (5_288_548, 5_330_571), "efficientnet_b1": (7_794_184, 7_856_239),
    "efficientnet_b2": (9_109_994, 9_177_569), "efficientnet_b3": (12_233_232, 12_320_535),
    "efficientnet_b4": (19_341_616, 19_466_823), "efficientnet_b5": (30_389_784, 30_562_527),
    "efficientnet_b6": (43_040_704, 43_265_143), "efficientnet_b7": (66_347_960, 66_658_687),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_parameter_counts_at_224(name):
    model = kcv.create_model(name, 1000, (224, 224, 3))
    trainable, keras_total = PINNED[name]
    assert trainable_count(model) == trainable == get_spec(name).reference["params"]
    assert model.count_params() == keras_total - 7


def test_paper_scaling_table():
    assert SCALING["efficientnet_b0"] == (1.0, 1.0, 224, 0.2)
    assert SCALING["efficientnet_b7"] == (2.0, 3.1, 600, 0.5)
    assert [round_filters(32, w) for w, *_ in SCALING.values()] == [32, 32, 32, 40, 48, 48, 56, 64]


def test_mbconv_se_and_stochastic_depth_b0():
    model = kcv.create_model("efficientnet_b0", 10, (64, 64, 3))
    # SE bottleneck = a quarter of the block INPUT channels (16 → 4), not of the expanded 96.
    assert model.get_layer("efficientnet_b0_block2a_expand_conv").filters == 96
    assert model.get_layer("efficientnet_b0_block2a_se_reduce").filters == 4
    assert model.get_layer("efficientnet_b0_block2a_se_reduce").activation.__name__ == "silu"
    drops = [l for l in model.layers if l.name.endswith("_drop")]
    rates = [l.rate for l in drops]
    assert rates == sorted(rates) and 0 < rates[0] < rates[-1] < 0.2  # linear in block index
    # Rate 0.2·i/16 for block i of B0's 16; the last residual block is block6d, i = 14.
    assert rates[-1] == pytest.approx(0.2 * 14 / 16) and rates[0] == pytest.approx(0.2 * 2 / 16)
    # Stochastic depth drops whole samples and rescales the kept ones.
    ones = np.ones((64, 2, 2, 3), np.float32)
    out = np.asarray(drops[-1](ones, training=True))
    per_sample = out.reshape(64, -1)
    assert np.all(per_sample.min(1) == per_sample.max(1))
    kept = np.unique(per_sample)
    assert np.all(np.isclose(kept, 0.0) | np.isclose(kept, 1 / (1 - rates[-1])))
    np.testing.assert_array_equal(drops[-1](ones, training=False), ones)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b3"])
def test_feature_taps(name):
    check_taps(name, size=64)
