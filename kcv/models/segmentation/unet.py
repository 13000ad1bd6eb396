"""U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, arXiv:1505.04597).

Contracting path: ``depth`` levels of (3×3 conv, BN, ReLU)×2 then 2×2 max-pool, channels
doubling from ``base_filters``; a bottleneck double conv; expanding path: 2×2 up-convolution
halving the channels, concatenation with the skip of the same level, (3×3 conv, BN, ReLU)×2;
1×1 conv head. Differences from the paper, on purpose: 'same' padding (output = input size,
no cropping of skips), BatchNorm after every conv, and the input padded to a multiple of
``2**depth`` inside the model and the logits cropped back, so any size works.

``backbone="resnet34"`` (any classifier with feature taps) replaces the contracting path by
that classifier's features, as segmentation_models.pytorch's ``Unet`` does: the decoder starts
from the stride-``2**depth`` tap (``depth`` 5 by default, i.e. stride 32), and each block
upsamples 2×, concatenates the backbone's tap at that stride (16, 8, 4, 2 where the backbone
has one) and applies (3×3 conv, BN, ReLU)×2; the last block reaches stride 1 without a skip;
a 3×3 conv gives the logits. Block widths are ``base_filters``×(16, 8, 4, 2, 1), so
``base_filters=16`` is smp's ``decoder_channels=(256, 128, 64, 32, 16)``.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.errors import KcvError
from kcv.layers import CropToReference, PadToMultiple, conv_bn_act, normalized_input
from kcv.models.segmentation.base import (BN_MOMENTUM, check_choice, crop_logits, encoder_taps,
                                          resize_like, stride_reference)
from kcv.models.backbone import feature_taps
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

UPSAMPLING = ("transpose", "bilinear")


def double_conv(x, filters: int, name: str):
    """(3×3 conv, BN, ReLU) × 2 — the unit of both paths."""
    x = conv_bn_act(x, filters, 3, name=f"{name}_1")
    return conv_bn_act(x, filters, 3, name=f"{name}_2")


def up_block(x, skip, filters: int, upsampling: str, name: str):
    """Double the resolution, halve the channels, concatenate the skip, double conv."""
    if upsampling == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal",
                                   name=f"{name}_upconv")(x)
    else:
        # Resize-then-convolve avoids the checkerboard artifacts of strided transposed
        # convolutions (Odena et al., Distill 2016).
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
        x = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal",
                          name=f"{name}_upconv")(x)
    x = layers.Concatenate(name=f"{name}_concat")([skip, x])
    return double_conv(x, filters, name)


def build_unet(num_classes: int, input_shape, base_filters: int = 64, depth: int = 4,
               upsampling: str = "transpose", name: str = "unet") -> keras.Model:
    """Build a U-Net training model (logits at input resolution).

    Args:
        num_classes: output channels of the 1×1 head (background included).
        input_shape: ``(H, W, 3)``; any H, W, or ``None``.
        base_filters: channels of the first level (64 in the paper).
        depth: number of pooling levels (4 in the paper).
        upsampling: ``"transpose"`` (2×2 up-conv, as in the paper) or ``"bilinear"``.
    """
    if upsampling not in UPSAMPLING:
        raise KcvError(f"upsampling='{upsampling}': choose one of {', '.join(UPSAMPLING)}")
    if int(depth) < 1 or int(base_filters) < 1:
        raise KcvError(f"depth and base_filters must be positive (got {depth}, {base_filters})")
    depth, base_filters = int(depth), int(base_filters)
    inputs, x = normalized_input(input_shape)
    x = PadToMultiple(2**depth, name=f"{name}_pad")(x)
    skips = []
    for i in range(depth):
        x = double_conv(x, base_filters * 2**i, f"{name}_down{i}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"{name}_down{i}_pool")(x)
    x = double_conv(x, base_filters * 2**depth, f"{name}_bottleneck")
    for i in reversed(range(depth)):
        x = up_block(x, skips[i], base_filters * 2**i, upsampling, f"{name}_up{i}")
    x = layers.Conv2D(num_classes, 1, name=f"{name}_head")(x)
    logits = CropToReference(2**depth, name=LOGITS_LAYER)([x, inputs])
    return keras.Model(inputs, logits, name=name)


def decoder_block(x, skip, reference, filters: int, upsampling: str, name: str):
    """smp's ``DecoderBlock``: upsample 2× (to ``reference``'s size), concatenate the skip if
    any, (3×3 conv, BN, ReLU)×2."""
    if upsampling == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal",
                                   name=f"{name}_upconv")(x)
    else:
        x = resize_like(x, reference, f"{name}_upsample")
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = conv_bn_act(x, filters, 3, name=f"{name}_1", momentum=BN_MOMENTUM)
    return conv_bn_act(x, filters, 3, name=f"{name}_2", momentum=BN_MOMENTUM)


def build_backbone_unet(num_classes: int, input_shape, backbone: str, base_filters: int = 16,
                        depth: int = 5, upsampling: str = "transpose", backbone_args=None,
                        name: str = "unet") -> keras.Model:
    """U-Net decoder on the feature taps of ``backbone`` (see the module docstring).

    Args:
        backbone: a registered classifier with feature taps.
        base_filters: width of the last decoder block; block widths are ``base_filters·2**k``.
        depth: the deepest tap read is at stride ``2**depth`` (3, 4 or 5).
        upsampling: ``transpose`` (2×2 stride-2 up-conv) or ``bilinear`` (resize).
        backbone_args: hyperparameters for the backbone builder.
    """
    check_choice("depth", depth, (3, 4, 5))
    available = set(feature_taps(backbone))
    skips = [2**i for i in range(depth - 1, 0, -1) if 2**i in available]  # e.g. 16, 8, 4, 2
    image = keras.Input(shape=tuple(input_shape), name="image")
    multiple = 2**depth
    padded, feats = encoder_taps(image, backbone, (multiple, *skips), multiple, name, backbone_args)
    taps = dict(zip(skips, feats[1:]))
    x = feats[0]
    for i in range(depth - 1, -1, -1):  # decoder blocks ending at strides 2**(depth-1) .. 1
        stride = 2**i
        skip = taps.get(stride)
        reference = skip
        if skip is None and upsampling == "bilinear":
            reference = stride_reference(padded, stride, f"{name}_dec{i}")
        x = decoder_block(x, skip, reference, base_filters * stride, upsampling, f"{name}_dec{i}")
    x = layers.Conv2D(num_classes, 3, padding="same", name=f"{name}_head")(x)
    return keras.Model(image, crop_logits(x, image, multiple), name=name)


@register("unet", task="segmentation", family="unet",
          paper="Ronneberger et al. 2015, arXiv:1505.04597",
          train_defaults={"img_size": 64, "epochs": 12, "batch_size": 16, "lr": 2e-3,
                          "model_args": {"base_filters": 16}})
def unet(num_classes, input_shape=(None, None, 3), base_filters=64, depth=None, upsampling="transpose",
         backbone=None, backbone_args=None):
    """U-Net; ``kcv train`` defaults to 16 base filters at 64 px so it trains in minutes on a CPU.

    ``depth`` defaults to 4 (the paper's) without a backbone and to 5 (stride 32, smp's
    ``encoder_depth``) with one.
    """
    if backbone is not None:
        check_choice("upsampling", upsampling, UPSAMPLING)
        return build_backbone_unet(num_classes, input_shape, backbone, base_filters,
                                   5 if depth is None else int(depth), upsampling, backbone_args)
    if backbone_args:
        raise KcvError("backbone_args needs backbone= (a classifier with feature taps)")
    return build_unet(num_classes, input_shape, base_filters, 4 if depth is None else depth, upsampling)
