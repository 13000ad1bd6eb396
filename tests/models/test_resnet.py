"""ResNet family: pinned parameter counts vs torchvision/timm, feature taps, atrous output
strides, the SE switch and hyperparameter errors.

Convention: torchvision counts conv/FC weights and BN γ/β as parameters and keeps BN running
statistics as buffers; Keras counts those statistics as non-trainable weights. So Keras'
*trainable* count is compared with torchvision's ``num_params`` (no conv biases in either), and
the Keras total (= trainable + 2 per BN channel) is pinned too.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kcv
from kcv.errors import KcvError
from kcv.models.analysis import count_macs
from kcv.models.backbone import build_encoder, feature_taps
from kcv.registry import get_spec

# name: (Keras total, trainable, MACs) at 224×224×3, 1000 classes
PINNED = {
    "resnet18": (11_699_112, 11_689_512, 1_814_073_344),
    "resnet34": (21_814_696, 21_797_672, 3_663_761_408),
    "resnet50": (25_610_152, 25_557_032, 4_089_184_256),
    "resnet101": (44_654_504, 44_549_160, 7_801_405_440),
    "resnet152": (60_344_232, 60_192_808, 11_513_626_624),
    "se_resnet50": (28_141_144, 28_088_024, 4_091_699_200),
    "resnet50_dcn": (26_481_415, 26_428_295, 4_313_169_920),
}


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_parameter_counts_at_224_match_the_reference(name):
    model = kcv.create_model(name, 1000, (224, 224, 3))
    total, trainable, macs = PINNED[name]
    assert (model.count_params(), _trainable(model), count_macs(model)) == (total, trainable, macs)
    ref = get_spec(name).reference
    if ref:  # torchvision / timm figures: trainable params within 1 %, GMACs within 1 %
        assert abs(trainable - ref["params"]) <= 0.01 * ref["params"]
        assert abs(macs / 1e9 - ref["gflops"]) <= 0.01 * ref["gflops"]
    keras.backend.clear_session()


def test_se_and_dcn_add_exactly_their_hand_counted_weights():
    # SE after the last 1x1 of every bottleneck: two FCs with bias, C -> C/16 -> C
    se = sum(n * (2 * c * (c // 16) + c + c // 16) for n, c in ((3, 256), (4, 512), (6, 1024), (3, 2048)))
    assert PINNED["se_resnet50"][1] - PINNED["resnet50"][1] == se == 2_530_992
    # DCNv2 offset/mask conv (3x3, 27 outputs, bias) in front of every 3x3 of conv3_x..conv5_x
    dcn = sum(n * (9 * w * 27 + 27) for n, w in ((4, 128), (6, 256), (3, 512)))
    assert PINNED["resnet50_dcn"][1] - PINNED["resnet50"][1] == dcn == 871_263


def test_taps_are_the_stem_and_each_stage_output():
    assert feature_taps("resnet50") == {2: "resnet50_stem_relu", 4: "resnet50_stage2_block3_out",
                                        8: "resnet50_stage3_block4_out", 16: "resnet50_stage4_block6_out",
                                        32: "resnet50_stage5_block3_out"}
    assert feature_taps("resnet18")[32] == "resnet18_stage5_block2_out"


@pytest.mark.parametrize("name,channels", [("resnet18", (64, 64, 128, 256, 512)),
                                           ("resnet50", (64, 256, 512, 1024, 2048))])
def test_tap_shapes_at_64_px(name, channels):
    enc = build_encoder(name, (64, 64, 3), strides=(2, 4, 8, 16, 32))
    assert [tuple(t.shape[1:]) for t in enc.outputs] == [
        (64 // s, 64 // s, c) for s, c in zip((2, 4, 8, 16, 32), channels)]


def test_features_only_builds_for_any_input_size(rng):
    enc = build_encoder("resnet18", (None, None, 3), strides=(4, 8, 16, 32))
    for h, w in ((64, 64), (96, 72)):
        feats = enc(rng.uniform(0, 255, (1, h, w, 3)).astype("float32"))
        assert [f.shape[1:3] for f in feats] == [(-(-h // s), -(-w // s)) for s in (4, 8, 16, 32)]
    trunk = kcv.create_model("resnet18", 3, (None, None, 3)).get_layer("resnet18_avgpool")
    assert trunk.output.shape == (None, 512)


@pytest.mark.parametrize("output_stride,sizes", [(16, (16, 8, 4, 4)), (8, (16, 8, 8, 8))])
def test_output_stride_keeps_tap_names_and_resolution(output_stride, sizes):
    enc = build_encoder("resnet50", (64, 64, 3), strides=(4, 8, 16, 32), output_stride=output_stride)
    assert [t.shape[1] for t in enc.outputs] == list(sizes)
    assert [t.shape[-1] for t in enc.outputs] == [256, 512, 1024, 2048]
    dilations = {layer.name: layer.dilation_rate for layer in enc.layers if layer.name.endswith("_2_conv")}
    # torchvision: the block that gave up its stride keeps the previous dilation
    assert dilations["resnet50_stage5_block1_2_conv"] == ((2, 2) if output_stride == 8 else (1, 1))
    assert dilations["resnet50_stage5_block2_2_conv"] == ((4, 4) if output_stride == 8 else (2, 2))
    full = kcv.create_model("resnet50", 1000, (64, 64, 3), output_stride=output_stride)
    assert full.count_params() == PINNED["resnet50"][0]  # dilation adds no weights


def test_squeeze_excitation_is_a_switch_of_the_family():
    plain = kcv.create_model("resnet18", 10, (64, 64, 3))
    se = kcv.create_model("resnet18", 10, (64, 64, 3), se_ratio=16)
    assert not any("_se_" in layer.name for layer in plain.layers)
    # SE rescales the residual branch before the addition
    add = se.get_layer("resnet18_stage3_block2_add")
    assert "resnet18_stage3_block2_se_excite" in [t._keras_history.operation.name for t in add.input]
    assert se.get_layer("resnet18_stage5_block1_se_reduce").filters == 512 // 16
    assert get_spec("se_resnet50").hyperparameters["se_ratio"] == 16


@pytest.mark.parametrize("kwargs,match", [({"output_stride": 4}, "output_stride 4"),
                                          ({"se_ratio": 0}, "se_ratio 0"),
                                          ({"deformable_stages": [1]}, "deformable_stages")])
def test_bad_hyperparameters_are_user_errors(kwargs, match):
    with pytest.raises(KcvError, match=match):
        kcv.create_model("resnet18", 3, (64, 64, 3), **kwargs)
