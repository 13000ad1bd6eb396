"""VGG-16/19: only 3×3 convs and 2×2 pools, the FC-4096 head, pinned parameter counts.

Convention: no BatchNorm in the paper configuration, so total = trainable params, equal to
torchvision's and keras.applications' counts (138,357,544 and 143,667,240 at 224 px,
1000 classes).
"""

from __future__ import annotations

import pytest

import kcv
from kcv.models.analysis import count_macs
from kcv.registry import get_spec
from tests.models.taps import check_taps, trainable_count

PINNED = {"vgg16": (138_357_544, 15.47), "vgg19": (143_667_240, 19.63)}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_parameter_count_and_macs_at_224(name):
    model = kcv.create_model(name, 1000, (224, 224, 3))
    params, gmacs = PINNED[name]
    assert model.count_params() == params == get_spec(name).reference["params"]
    assert count_macs(model) / 1e9 == pytest.approx(gmacs, rel=0.01)


@pytest.mark.parametrize("name,convs", [("vgg16", 13), ("vgg19", 16)])
def test_only_3x3_convs_and_2x2_pools(name, convs):
    model = kcv.create_model(name, 10, (64, 64, 3))
    kinds = [l.__class__.__name__ for l in model.layers]
    assert kinds.count("Conv2D") == convs and kinds.count("MaxPooling2D") == 5
    for layer, kind in zip(model.layers, kinds):
        if kind == "Conv2D":
            assert layer.kernel_size == (3, 3) and layer.strides == (1, 1)
        if kind == "MaxPooling2D":
            assert layer.pool_size == (2, 2) and layer.strides == (2, 2)
    dense = [l.units for l in model.layers if l.__class__.__name__ == "Dense"]
    assert dense == [4096, 4096, 10]


def test_batch_norm_variant_keeps_the_tap_names():
    plain = kcv.create_model("vgg16", 10, (32, 32, 3))
    bn = kcv.create_model("vgg16", 10, (32, 32, 3), batch_norm=True)
    taps = get_spec("vgg16").taps.values()
    for name in taps:
        assert plain.get_layer(name) is not None and bn.get_layer(name) is not None
    # Per conv: BN's trainable gamma and beta (2 per channel) replace the bias (1 per channel).
    channels = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512
    assert trainable_count(bn) - trainable_count(plain) == channels


@pytest.mark.parametrize("name", sorted(PINNED))
def test_feature_taps(name):
    check_taps(name, size=64)
