"""AlexNet: the course's layer list, its hand-computed parameter count, taps and min size.

Convention: Keras and torchvision agree here (no BatchNorm), so total = trainable params.
The reference is a hand count of the 96/256/384/384/256 layer list, 62,378,344, not
torchvision's 64/192-channel variant (61,100,840).
"""

from __future__ import annotations

import numpy as np
import pytest

import kcv
from kcv.models.analysis import count_macs
from kcv.registry import get_spec
from tests.models.taps import check_taps

HAND_COUNT = (
    (11 * 11 * 3 * 96 + 96) + (5 * 5 * 96 * 256 + 256) + (3 * 3 * 256 * 384 + 384)
    + (3 * 3 * 384 * 384 + 384) + (3 * 3 * 384 * 256 + 256)
    + (6 * 6 * 256 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000))


def test_parameter_count_at_224_matches_the_hand_count():
    model = kcv.create_model("alexnet", 1000, (224, 224, 3))
    assert HAND_COUNT == 62_378_344 == get_spec("alexnet").reference["params"]
    assert model.count_params() == HAND_COUNT
    assert count_macs(model) / 1e9 == pytest.approx(1.135, abs=0.005)


def test_layer_list_and_feature_map_sizes_at_224():
    model = kcv.create_model("alexnet", 10, (224, 224, 3))
    convs = [(l.filters, l.kernel_size[0], l.strides[0]) for l in model.layers
             if l.__class__.__name__ == "Conv2D"]
    assert convs == [(96, 11, 4), (256, 5, 1), (384, 3, 1), (384, 3, 1), (256, 3, 1)]
    sides = {n: model.get_layer(f"alexnet_{n}").output.shape[1]
             for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool3", "avgpool")}
    assert sides == {"conv1": 55, "pool1": 27, "conv2": 27, "pool2": 13, "conv5": 13,
                     "pool3": 6, "avgpool": 6}
    assert not any("lrn" in l.name or "normalization" in l.name for l in model.layers)


def test_min_size_is_63_and_the_head_runs_at_any_size_from_there():
    assert get_spec("alexnet").min_size == 63
    for size in (63, 100):
        model = kcv.create_model("alexnet", 3, (size, size, 3))
        assert model.get_layer("alexnet_avgpool").output.shape[1:3] == (6, 6)
    x = np.full((1, 80, 80, 3), 128.0, np.float32)
    model = kcv.create_model("alexnet", 3, (None, None, 3))
    assert np.asarray(model(x)).shape == (1, 3)
    with pytest.raises(ValueError):
        kcv.create_model("alexnet", 3, (62, 62, 3))


def test_feature_taps():
    check_taps("alexnet", size=128)
