"""The segmentation zoo: FCN-32s/16s/8s, U-Net on a backbone, DeepLab v3+, Hypercolumns.

Every architecture: logits at the input's size for a static 100×100 and a dynamic 75×90 input,
and an inference model that converts to float32 TFLite (LiteRT within 1e-4 of Keras) and to
ONNX (onnxruntime within 1e-4). Small widths and few-layer backbones keep the conversions
quick (tf2onnx time grows with the op count: a dynamic-size graph costs 2–4× a static one, so
every architecture converts at 64 px and DeepLab v3+ — whose image-pooling branch must resize
back to a run-time size — also with ``(None, None, 3)``); ``tests/models/test_zoo.py`` runs
the registered defaults.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kcv
from kcv.errors import KcvError
from kcv.export.onnx import convert as convert_onnx
from kcv.export.tflite import convert_fp32
from kcv.models import inference_model
from kcv.runtime.runners import LiteRTRunner, OnnxRunner

# key (arch[-variant]) -> small hyperparameters
SMALL = {
    "fcn32s": {"backbone": "alexnet", "fc_width": 16},
    "fcn16s": {"backbone": "alexnet", "fc_width": 16},
    "fcn8s": {"backbone": "alexnet", "fc_width": 16},
    "fcn8s-bilinear": {"backbone": "alexnet", "fc_width": 16, "upsampling": "bilinear"},
    "unet-resnet18": {"backbone": "resnet18", "base_filters": 2},
    "unet-bilinear": {"backbone": "alexnet", "base_filters": 2, "upsampling": "bilinear"},
    "deeplabv3plus": {"backbone": "resnet18", "output_stride": 8, "aspp_filters": 8, "decoder_filters": 8,
                      "low_level_filters": 4},
    "deeplabv3plus-alexnet": {"backbone": "alexnet", "output_stride": 8, "aspp_filters": 8,
                              "decoder_filters": 8, "low_level_filters": 4},
    "hypercolumn": {"backbone": "alexnet"},
}
SIZE_CASES = ["fcn32s", "fcn16s", "fcn8s", "fcn8s-bilinear", "unet-resnet18", "unet-bilinear", "deeplabv3plus",
              "hypercolumn"]
EXPORT_CASES = ["fcn32s", "fcn16s", "fcn8s", "unet-bilinear", "deeplabv3plus-alexnet", "hypercolumn"]


def build(key, input_shape, num_classes=4):
    keras.utils.set_random_seed(0)
    return kcv.create_model(key.split("-")[0], num_classes, input_shape, **SMALL[key])


def test_every_segmentation_architecture_is_covered():
    assert set(kcv.list_models("segmentation")) == {k.split("-")[0] for k in SIZE_CASES}
    assert set(kcv.list_models("segmentation")) == {k.split("-")[0] for k in EXPORT_CASES}


@pytest.mark.parametrize("key", SIZE_CASES)
def test_output_is_input_sized_static_100_and_dynamic_75x90(key):
    static = build(key, (100, 100, 3))
    assert static.output_shape == (None, 100, 100, 4)
    assert static(np.zeros((1, 100, 100, 3), "float32")).shape == (1, 100, 100, 4)
    dynamic = build(key, (None, None, 3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 75, 90, 3)).astype("float32")
    out = np.asarray(dynamic(x))
    assert out.shape == (2, 75, 90, 4) and np.all(np.isfinite(out))


def check_exports(model, x, tmp_path, onnx=True):
    """fp32 TFLite in LiteRT and ONNX in onnxruntime, each within 1e-4 of Keras on ``x``."""
    want = np.asarray(model(x, training=False))
    convert_fp32(model, tmp_path / "m.tflite")  # builtin ops only: a Flex op fails here
    runner = LiteRTRunner(tmp_path / "m.tflite")
    if None in runner.input_shape:
        runner.interpreter.resize_tensor_input(runner.input["index"], list(x.shape))
        runner.interpreter.allocate_tensors()
    got = runner(x)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-4
    if onnx:
        convert_onnx(model, tmp_path / "m.onnx")
        onnx_out = OnnxRunner(tmp_path / "m.onnx")(x)
        assert onnx_out.shape == want.shape
        assert np.max(np.abs(onnx_out - want)) <= 1e-4


@pytest.mark.parametrize("key", EXPORT_CASES)
def test_exports_to_tflite_and_onnx(key, tmp_path):
    model = inference_model(build(key, (64, 64, 3)))
    check_exports(model, np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32"), tmp_path)


@pytest.mark.parametrize("key,onnx", [("deeplabv3plus-alexnet", True), ("fcn8s", False)])
def test_dynamic_size_model_exports(key, onnx, tmp_path):
    # DeepLab's image-pooling branch broadcasts back to a run-time H×W and its decoder resizes
    # to one; FCN's transposed convolutions get their output shape at run time. Both convert
    # to builtin ops and run at any size (75×90 here).
    model = inference_model(build(key, (None, None, 3)))
    x = np.random.default_rng(2).uniform(0, 255, (1, 75, 90, 3)).astype("float32")
    check_exports(model, x, tmp_path, onnx=onnx)


def test_fcn_skips_start_at_zero_and_final_upsampling_is_fixed_bilinear():
    model = build("fcn8s", (64, 64, 3))
    for skip in ("fcn8s_score_pool4", "fcn8s_score_pool3"):
        assert not np.any(np.asarray(model.get_layer(skip).kernel))
    assert model.get_layer("fcn8s_upscore2").trainable and model.get_layer("fcn8s_upscore_pool4").trainable
    final = model.get_layer("fcn8s_upscore8")
    assert not final.trainable and final.kernel.shape == (16, 16, 4, 4) and final.strides == (8, 8)
    # The skips read the backbone's stride-16 and stride-8 taps (64 px padded → 4×4 and 8×8).
    assert model.get_layer("fcn8s_score_pool4").input.shape[1:3] == (4, 4)
    assert model.get_layer("fcn8s_score_pool3").input.shape[1:3] == (8, 8)
    names = {l.name for l in build("fcn32s", (64, 64, 3)).layers}
    assert "fcn32s_upscore32" in names and not any("score_pool" in n for n in names)


def test_fcn_paper_head_on_vgg16():
    model = kcv.create_model("fcn32s", 21, (224, 224, 3))
    fc6, fc7 = model.get_layer("fcn32s_fc6"), model.get_layer("fcn32s_fc7")
    assert fc6.kernel.shape == (7, 7, 512, 4096) and fc7.kernel.shape == (1, 1, 4096, 4096)
    assert model.get_layer("fcn32s_upscore32").kernel.shape == (64, 64, 21, 21)
    assert "vgg16_block5_conv3" in {l.name for l in model.layers}  # backbone wired flat, by name


def test_unet_on_backbone_is_smp_like():
    model = kcv.create_model("unet", 3, (64, 64, 3), backbone="resnet18", base_filters=16)
    widths = [model.get_layer(f"unet_dec{i}_2_conv").filters for i in range(4, -1, -1)]
    assert widths == [256, 128, 64, 32, 16]  # smp decoder_channels
    # Skips: the resnet18 taps at strides 16, 8, 4, 2 are concatenated; the last block has none.
    concat = {i: model.get_layer(f"unet_dec{i}_concat").output.shape for i in (4, 3, 2, 1)}
    assert concat[4][1:] == (4, 4, 256 + 256) and concat[1][1:] == (32, 32, 32 + 64)
    assert "unet_dec0_concat" not in {l.name for l in model.layers}
    assert model.get_layer("resnet18_stage4_block2_out") is not None


def test_plain_unet_unchanged_and_backbone_args_need_a_backbone():
    assert kcv.create_model("unet", 2, (572, 572, 3)).count_params() == 31_049_474
    with pytest.raises(KcvError, match="backbone_args"):
        kcv.create_model("unet", 2, (64, 64, 3), backbone_args={"alpha": 0.5})


@pytest.mark.parametrize("output_stride,size", [(16, 4), (8, 8)])
def test_deeplab_output_stride_and_decoder(output_stride, size):
    model = kcv.create_model("deeplabv3plus", 4, (64, 64, 3), backbone="resnet18", output_stride=output_stride,
                             aspp_filters=8, decoder_filters=8)
    assert model.get_layer("deeplabv3plus_aspp_1x1_conv").input.shape[1:3] == (size, size)
    assert model.get_layer("deeplabv3plus_low_level_conv").output.shape[1:] == (16, 16, 48)
    rates = [model.get_layer(f"deeplabv3plus_aspp_rate{r}_depthwise").dilation_rate[0]
             for r in (6 * 16 // output_stride, 12 * 16 // output_stride, 18 * 16 // output_stride)]
    assert rates == [r * 16 // output_stride for r in (6, 12, 18)]


@pytest.mark.parametrize("output_stride", [16, 8])
def test_deeplab_on_atrous_mobilenet_v2(output_stride):
    model = kcv.create_model("deeplabv3plus", 4, (64, 64, 3), backbone="mobilenet_v2", output_stride=output_stride,
                             aspp_filters=8, decoder_filters=8, backbone_args={"alpha": 0.35})
    side = 64 // output_stride
    assert model.get_layer("deeplabv3plus_aspp_1x1_conv").input.shape[1:3] == (side, side)
    assert model.get_layer("deeplabv3plus_low_level_conv").input.shape[1:3] == (16, 16)
    assert model.output_shape == (None, 64, 64, 4)


def test_deeplab_default_is_resnet50_os16_and_any_backbone_works():
    model = kcv.create_model("deeplabv3plus", 21, (None, None, 3))
    assert "resnet50_stage5_block3_out" in {l.name for l in model.layers}
    assert model.get_layer("deeplabv3plus_aspp_project_conv").filters == 256
    # A family without output_stride (VGG) reads its stride-16 tap instead.
    vgg = kcv.create_model("deeplabv3plus", 3, (64, 64, 3), backbone="vgg16", aspp_filters=8, decoder_filters=8)
    assert vgg.get_layer("deeplabv3plus_aspp_1x1_conv").input.shape[1:3] == (4, 4)


def test_hypercolumn_concatenates_upsampled_taps():
    model = kcv.create_model("hypercolumn", 3, (64, 64, 3), backbone="resnet18")
    assert model.get_layer("hypercolumn_concat").output.shape[1:] == (16, 16, 64 + 128 + 256 + 512)
    assert model.get_layer("hypercolumn_classifier").kernel.shape == (1, 1, 960, 3)
    with pytest.raises(KcvError, match="strides"):
        kcv.create_model("hypercolumn", 3, (64, 64, 3), backbone="alexnet", strides=(2, 4))


def test_bad_backbone_and_backbone_args_are_user_errors():
    with pytest.raises(KcvError, match="no feature taps|unknown architecture"):
        kcv.create_model("fcn8s", 3, (64, 64, 3), backbone="lenet5")
    with pytest.raises(KcvError, match="backbone_args"):
        kcv.create_model("deeplabv3plus", 3, (64, 64, 3), backbone="resnet18", backbone_args={"batch_norm": True})
    with pytest.raises(KcvError, match="output_stride"):
        kcv.create_model("deeplabv3plus", 3, (64, 64, 3), output_stride=32)
    with pytest.raises(KcvError, match="upsampling"):
        kcv.create_model("fcn16s", 3, (64, 64, 3), upsampling="nearest")


@pytest.mark.parametrize("name", ["fcn32s", "deeplabv3plus", "hypercolumn"])
def test_kcv_train_defaults_build_at_their_size(name):
    # The registered `kcv train` defaults (benchmarks/segmentation_zoo.py chose them) are valid
    # hyperparameters and give input-sized logits at the default image size.
    from kcv.registry import get_spec

    d = get_spec(name).train_defaults
    model = kcv.create_model(name, 4, (d["img_size"], d["img_size"], 3), **d["model_args"])
    assert model.output_shape == (None, d["img_size"], d["img_size"], 4)
    if name == "deeplabv3plus":  # rates scaled to the 4×4 ASPP input of a 64-px image
        assert {l.name for l in model.layers} >= {f"deeplabv3plus_aspp_rate{r}_depthwise" for r in (1, 2, 3)}
