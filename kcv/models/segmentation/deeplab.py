"""DeepLab v3+ (Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018, arXiv:1802.02611).

Encoder: an atrous backbone whose last stages trade stride for dilation, so its deepest
features sit at output stride 16 (default) or 8 (``output_stride``, passed to the backbone's
builder through :func:`kcv.models.backbone.build_encoder`), followed by ASPP
(:func:`kcv.layers.aspp.aspp`: 1×1 conv, three 3×3 atrous separable convs at rates 6/12/18 —
12/24/36 at OS 8 — and image-level pooling, concatenated and projected to 256 channels).

Decoder (paper §3.1, Fig. 2): the stride-4 low-level features are projected to 48 channels by
a 1×1 conv (+BN, ReLU) so they do not outweigh the 256 encoder channels, the ASPP output is
upsampled bilinearly (4× at OS 16) to their size and concatenated, two 3×3 depthwise-separable
convs of 256 filters refine the result, a 1×1 conv gives the class scores and a bilinear 4×
upsampling brings them to the input size.

Backbones: ``resnet50`` (default; the paper's ResNet-101 is ``backbone="resnet101"``),
``mobilenet_v2`` and every other classifier with feature taps. ResNets and MobileNetV2 accept
``output_stride`` and become atrous; for families that do not (VGG, DenseNet, EfficientNet,
GoogLeNet, AlexNet) the encoder simply stops at the tap of stride ``output_stride`` — fewer
layers instead of dilated ones, as no pretrained-weight reuse is at stake here.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.layers.aspp import aspp, aspp_rates, separable_conv_bn
from kcv.layers.conv_bn import conv_bn_act
from kcv.models.segmentation.base import (BN_MOMENTUM, check_backbone_args, check_choice,
                                          crop_logits, encoder_taps, resize_like)
from kcv.registry import get_spec, register


def _encoder_plan(backbone: str, output_stride: int, backbone_args) -> tuple[int, dict]:
    """``(stride of the tap to read, backbone args)``: the stride-32 tap of an atrous backbone
    built at ``output_stride``, or the stride-``output_stride`` tap of any other."""
    args = check_backbone_args(backbone, backbone_args)
    if "output_stride" in get_spec(backbone).hyperparameters:
        return 32, {**args, "output_stride": output_stride}
    return output_stride, args


def build_deeplabv3plus(num_classes: int, input_shape, backbone: str = "resnet50", output_stride: int = 16,
                        aspp_filters: int = 256, low_level_filters: int = 48, decoder_filters: int = 256,
                        atrous_rates=None, dropout: float = 0.1, backbone_args=None,
                        name: str = "deeplabv3plus") -> keras.Model:
    """Build DeepLab v3+ (logits at input resolution).

    Args:
        backbone: a classifier with feature taps (stride 4 and ``output_stride``/32).
        output_stride: 16 or 8 — resolution of the ASPP input.
        aspp_filters: channels of each ASPP branch and of its projection (256).
        low_level_filters: channels the stride-4 features are projected to (48).
        decoder_filters: channels of the two 3×3 separable decoder convs (256).
        atrous_rates: ASPP rates; ``None`` = (6, 12, 18)·16/``output_stride``.
        dropout: after the ASPP projection (0.1).
        backbone_args: other hyperparameters for the backbone (``alpha=0.5``...).
    """
    check_choice("output_stride", output_stride, (16, 8))
    rates = tuple(int(r) for r in atrous_rates) if atrous_rates else aspp_rates(output_stride)
    deep_tap, args = _encoder_plan(backbone, output_stride, backbone_args)
    image = keras.Input(shape=tuple(input_shape), name="image")
    padded, (low, high) = encoder_taps(image, backbone, (4, deep_tap), output_stride, name, args,
                                       actual_strides=(4, output_stride))

    x = aspp(high, int(aspp_filters), rates, float(dropout), name=f"{name}_aspp", momentum=BN_MOMENTUM)
    low = conv_bn_act(low, int(low_level_filters), 1, name=f"{name}_low_level", momentum=BN_MOMENTUM)
    x = resize_like(x, low, f"{name}_aspp_upsample")
    x = layers.Concatenate(name=f"{name}_decoder_concat")([x, low])
    for i in (1, 2):
        x = separable_conv_bn(x, int(decoder_filters), 3, name=f"{name}_decoder_conv{i}", momentum=BN_MOMENTUM)
    x = layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)
    x = resize_like(x, padded, f"{name}_upsample")
    return keras.Model(image, crop_logits(x, image, output_stride), name=name)


# `kcv train` defaults (benchmarks/segmentation_zoo.py): ResNet-18 and 128-channel ASPP and
# decoder so it trains in minutes on a CPU, and ASPP rates scaled to the feature map. The
# paper's 6/12/18 are for the 33×33 stride-16 map of a 513-px crop; the map of a 64-px image
# is 4×4, where a 3×3 conv of rate >= 4 sees only its centre tap — a 1×1 conv (DeepLab v3
# §3.3) — and TensorFlow's CPU atrous convolution still pays for the padding (a train step
# took 1.9× as long as with rates 1/2/3). Rates 1/2/3, lr 2e-3 and 12 epochs: val mIoU 0.53
# (0.50 with 6/12/18, lr 1e-3, 10 epochs). `--model-arg atrous_rates=null` gives the paper's.
TRAIN = {"img_size": 64, "epochs": 12, "batch_size": 16, "lr": 2e-3,
         "model_args": {"backbone": "resnet18", "aspp_filters": 128, "decoder_filters": 128,
                        "atrous_rates": [1, 2, 3]}}


@register("deeplabv3plus", task="segmentation", family="deeplab",
          paper="Chen et al. 2018, arXiv:1802.02611", train_defaults=TRAIN)
def deeplabv3plus(num_classes, input_shape=(None, None, 3), backbone="resnet50", output_stride=16,
                  aspp_filters=256, low_level_filters=48, decoder_filters=256, atrous_rates=None,
                  dropout=0.1, backbone_args=None):
    """DeepLab v3+ on an atrous ResNet-50 at output stride 16; ``kcv train`` defaults to a
    ResNet-18, 128-channel ASPP/decoder and rates 1/2/3 at 64 px (``TRAIN`` above)."""
    return build_deeplabv3plus(num_classes, input_shape, backbone, output_stride, aspp_filters,
                               low_level_filters, decoder_filters, atrous_rates, dropout, backbone_args)
