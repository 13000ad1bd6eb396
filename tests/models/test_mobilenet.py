"""MobileNetV2: inverted residuals, linear bottlenecks, ReLU6, ``alpha``, ``output_stride``.

Convention: trainable params equal torchvision's mobilenet_v2 (3,504,872); the total with
BN moving statistics equals keras.applications' MobileNetV2 (3,538,984).
"""

from __future__ import annotations

import pytest

import kcv
from kcv.errors import KcvError
from kcv.models.analysis import count_macs
from kcv.models.backbone import build_encoder
from kcv.registry import get_spec
from tests.models.taps import check_taps, trainable_count


def test_parameter_counts_at_224():
    model = kcv.create_model("mobilenet_v2", 1000, (224, 224, 3))
    assert trainable_count(model) == 3_504_872 == get_spec("mobilenet_v2").reference["params"]
    assert model.count_params() == 3_538_984
    assert count_macs(model) / 1e9 == pytest.approx(0.30, rel=0.02)


def test_inverted_residual_structure():
    model = kcv.create_model("mobilenet_v2", 10, (64, 64, 3))
    # Block 1 expands 16 → 96 (t = 6), filters depthwise, projects linearly to 24.
    assert model.get_layer("mobilenet_v2_block1_expand_conv").filters == 96
    assert model.get_layer("mobilenet_v2_block1_expand_relu").max_value == 6.0
    names = {l.name for l in model.layers}
    assert "mobilenet_v2_block1_project_relu" not in names  # linear bottleneck
    adds = [n for n in names if n.endswith("_add")]
    assert len(adds) == 10  # repeats with unchanged stride and width


def test_width_multiplier():
    half = kcv.create_model("mobilenet_v2", 1000, (224, 224, 3), alpha=0.5)
    assert half.get_layer("mobilenet_v2_stem_conv").filters == 16
    assert half.get_layer("mobilenet_v2_out_conv").filters == 1280  # kept for alpha <= 1
    assert trainable_count(half) < 2_000_000


@pytest.mark.parametrize("output_stride,side", [(None, 2), (16, 4), (8, 8)])
def test_output_stride_dilates_instead_of_striding(output_stride, side):
    enc = build_encoder("mobilenet_v2", (64, 64, 3), strides=(8, 16, 32), output_stride=output_stride)
    f8, f16, f32 = enc.outputs
    assert f8.shape[1] == 8
    assert f16.shape[1] == max(side, 4) and f32.shape[1] == side
    params = kcv.create_model("mobilenet_v2", 10, (64, 64, 3), output_stride=output_stride).count_params()
    assert params == kcv.create_model("mobilenet_v2", 10, (64, 64, 3)).count_params()


def test_output_stride_dilations_follow_deeplab():
    model = kcv.create_model("mobilenet_v2", 10, (64, 64, 3), output_stride=8)
    dil = {i: model.get_layer(f"mobilenet_v2_block{i}_dwconv").dilation_rate[0] for i in range(17)}
    assert [dil[i] for i in (5, 6, 7, 12, 13, 14, 16)] == [1, 1, 2, 2, 2, 4, 4]


def test_bad_hyperparameters_are_user_errors():
    with pytest.raises(KcvError, match="output_stride=4"):
        kcv.create_model("mobilenet_v2", 3, (32, 32, 3), output_stride=4)
    with pytest.raises(KcvError, match="alpha"):
        kcv.create_model("mobilenet_v2", 3, (32, 32, 3), alpha=0)


def test_feature_taps():
    check_taps("mobilenet_v2", size=64)
    check_taps("mobilenet_v2", size=64, output_stride=16, slack=2)
