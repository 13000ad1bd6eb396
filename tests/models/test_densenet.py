"""DenseNet-121/169/201: growth rate 32, bottleneck layers, compression 0.5, pinned counts.

Convention: trainable params are compared with torchvision (which stores no BN moving
statistics); the total, with Keras' non-trainable moving mean/variance, equals
keras.applications' count.
"""

from __future__ import annotations

import pytest

import kcv
from kcv.models.analysis import count_macs
from kcv.registry import get_spec
from tests.models.taps import check_taps, trainable_count

# name: (trainable = torchvision, total = keras.applications, torchvision GMACs)
PINNED = {"densenet121": (7_978_856, 8_062_504, 2.83),
          "densenet169": (14_149_480, 14_307_880, 3.36),
          "densenet201": (20_013_928, 20_242_984, 4.29)}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_parameter_counts_at_224(name):
    model = kcv.create_model(name, 1000, (224, 224, 3))
    trainable, total, gmacs = PINNED[name]
    assert trainable_count(model) == trainable == get_spec(name).reference["params"]
    assert model.count_params() == total
    assert count_macs(model) / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_growth_bottleneck_and_compression():
    model = kcv.create_model("densenet121", 10, (64, 64, 3))
    # Every layer: 1×1 conv to 4k = 128, 3×3 conv to k = 32.
    assert model.get_layer("densenet121_block1_layer1_1_conv").filters == 128
    assert model.get_layer("densenet121_block1_layer1_2_conv").filters == 32
    # Block 1 ends at 64 + 6·32 = 256 channels; transition 1 compresses to 128.
    assert model.get_layer("densenet121_block1_layer6_concat").output.shape[-1] == 256
    assert model.get_layer("densenet121_transition1_conv").filters == 128
    assert model.get_layer("densenet121_final_relu").output.shape[-1] == 1024


@pytest.mark.parametrize("name", sorted(PINNED))
def test_feature_taps(name):
    check_taps(name, size=64)
