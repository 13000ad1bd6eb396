"""Atrous Spatial Pyramid Pooling and the depthwise-separable convolution of DeepLab v3+.

DeepLab v3 (Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic Image
Segmentation", arXiv:1706.05587, §3.3) samples the stride-16 features at several rates in
parallel: a 1×1 conv, three 3×3 atrous convs (rates 6, 12, 18 at output stride 16, doubled at
8) and image-level pooling (global average → 1×1 conv → broadcast back), each with 256
filters and BN, concatenated and projected by a 1×1 conv. DeepLab v3+ (Chen, Zhu, Papandreou,
Schroff & Adam, arXiv:1802.02611, §3.2) makes the 3×3 branches depthwise separable, with BN +
ReLU after the depthwise and after the pointwise conv (its ``split_separable_conv2d``), and
drops out 10% after the projection (the reference code's ``keep_prob=0.9``).

A depthwise-separable k×k conv from M to N channels has k²·M + M·N weights instead of
k²·M·N (Howard et al. 2017, arXiv:1704.04861, §3.1): for 3×3 and N = 256 about 8.7× fewer.
"""

from __future__ import annotations

from keras import layers

from kcv.layers.conv_bn import conv_bn_act
from kcv.layers.upsample import ResizeToReference

ASPP_RATES_OS16 = (6, 12, 18)


def _bn_relu(x, name: str, momentum: float):
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def separable_conv_bn(x, filters: int, kernel_size: int = 3, dilation_rate: int = 1,
                      name: str = "sepconv", momentum: float = 0.9):
    """Depthwise k×k (atrous) conv → BN → ReLU → pointwise 1×1 conv → BN → ReLU.

    No conv biases (BN follows each), so the two kernels hold exactly k²·M + M·N weights.
    Layers: ``{name}_depthwise``, ``{name}_depthwise_bn/_relu``, ``{name}_pointwise``,
    ``{name}_pointwise_bn/_relu``.
    """
    x = layers.DepthwiseConv2D(kernel_size, padding="same", dilation_rate=dilation_rate,
                               use_bias=False, depthwise_initializer="he_normal",
                               name=f"{name}_depthwise")(x)
    x = _bn_relu(x, f"{name}_depthwise", momentum)
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_pointwise")(x)
    return _bn_relu(x, f"{name}_pointwise", momentum)


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    """Atrous rates for ``output_stride``: (6, 12, 18) at 16, doubled at 8 (DeepLab v3 §4.1)."""
    return tuple(r * 16 // int(output_stride) for r in ASPP_RATES_OS16)


def aspp(x, filters: int = 256, rates=ASPP_RATES_OS16, dropout: float = 0.1, name: str = "aspp",
         momentum: float = 0.9):
    """Atrous Spatial Pyramid Pooling with separable atrous branches (DeepLab v3+).

    Args:
        x: the backbone's last feature map (output stride 16 or 8).
        filters: channels of every branch and of the projection (256 in the paper).
        rates: atrous rates of the three separable 3×3 branches (:func:`aspp_rates`).
        dropout: rate after the projection (0.1 in the reference code).

    The image-level branch pools to 1×1 and is resized back with :class:`ResizeToReference`,
    i.e. broadcast to the feature map's H×W: no static size is baked in, so the block works
    for ``(None, None, 3)`` models and exports them (a ``GATHER``-based broadcast in TFLite,
    builtin ops only).
    """
    branches = [conv_bn_act(x, filters, 1, name=f"{name}_1x1", momentum=momentum)]
    for rate in rates:
        branches.append(separable_conv_bn(x, filters, 3, rate, name=f"{name}_rate{rate}", momentum=momentum))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = conv_bn_act(pooled, filters, 1, name=f"{name}_pool_1x1", momentum=momentum)
    branches.append(ResizeToReference(name=f"{name}_pool_resize")([pooled, x]))
    y = layers.Concatenate(name=f"{name}_concat")(branches)
    y = conv_bn_act(y, filters, 1, name=f"{name}_project", momentum=momentum)
    return layers.Dropout(dropout, name=f"{name}_dropout")(y) if dropout else y
