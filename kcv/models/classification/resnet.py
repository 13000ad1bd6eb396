"""ResNet (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv:1512.03385), with the switches the course builds on it:

- ``se_ratio=16``: squeeze-and-excitation in every block, on the residual branch before the
  addition (Hu et al., "Squeeze-and-Excitation Networks", arXiv:1709.01507) → ``se_resnet50``;
- ``deformable_stages=(3, 4, 5)``: the 3×3 convolutions of conv3_x..conv5_x become modulated
  deformable convolutions (DCNv2, Zhu et al., arXiv:1811.11168) → ``resnet50_dcn``;
- ``output_stride=16 | 8``: the last one / two stages trade their stride for dilation (atrous
  ResNet of DeepLab v3/v3+, Chen et al. arXiv:1706.05587), for dense prediction.

Layout follows the paper's Table 1: a 7×7/2 stem conv and 3×3/2 max pool, then stages conv2_x
.. conv5_x (named ``stage2`` .. ``stage5``) of basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4)
blocks with 64, 128, 256, 512 base widths. Two variants:

``variant="v1.5"`` (default), torchvision's structure and parameter counts:

- "ResNet v1.5": a bottleneck's stride sits on its 3×3 conv, not on the first 1×1 as in the
  paper (same parameters; 4.09 instead of 3.8 GMACs at 224 px for ResNet-50, better accuracy);
- no conv biases, BN (ε = 1e-5) after every conv; projection shortcuts (1×1 conv + BN, option
  B of the paper) exactly where the shape changes, identity elsewhere;
- He initialisation, ``fan_out`` normal, as torchvision's ``kaiming_normal_``; the last BN of
  every residual branch starts at γ = 0 (``zero_init_residual``, Goyal et al. 2017), so each
  block starts as the identity: without it a from-scratch step on 32-px images (1×1 maps in
  conv5_x, BN over 2 values) blows the weights up;
- TensorFlow's "same" padding, so any input size works, ``(None, None, 3)`` included. Unlike
  torchvision, which pads the stem conv, the stem pool and the strided 3×3 convs
  symmetrically, "same" pads a stride-2 layer on an even input only at the bottom/right, so
  the sampling grid is shifted by a pixel: torchvision's weights would not compute the same.

``variant="v1"``, keras.applications' ``ResNet50/101/152`` (the paper's v1), for its
ImageNet weights (``weights="imagenet"``, :mod:`kcv.models.imagenet`): the stride sits on
the first 1×1 conv (and the shortcut), every conv has a bias, BN ε = 1.001e-5, and the stem
conv and pool are zero-padded symmetrically (3 and 1 pixels) and then run 'valid'. The
weights expect ``preprocessing="caffe"`` (BGR, mean subtracted; :mod:`kcv.layers.preprocess`).

Layer names: ``{name}_stem_{conv,bn,relu,pool}``, ``{name}_stage{s}_block{b}_{i}_{conv,bn,relu}``
(``i`` = 1, 2[, 3] along the residual branch), ``..._shortcut_{conv,bn}``, ``..._se_*``,
``..._add`` and ``..._out`` (the block's final ReLU), then ``{name}_avgpool`` and ``logits``.
Feature taps (strides 2..32) are the stem ReLU and each stage's last ``..._out``; with
``output_stride`` they keep their names while the deepest ones keep stride 16 or 8.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.errors import KcvError
from kcv.layers import normalized_input, squeeze_excite
from kcv.layers.deformable import DeformableConv2D
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

# depth -> (block kind, blocks per stage conv2_x..conv5_x), paper Table 1
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}
WIDTHS = (64, 128, 256, 512)
STAGES = (2, 3, 4, 5)
EXPANSION = {"basic": 1, "bottleneck": 4}
# torchvision's BN momentum 0.1 (= Keras 0.9): Keras' default 0.99 leaves the moving statistics
# stale for the first hundreds of steps, so short runs validate far below their training accuracy
BN_MOMENTUM = 0.9


def he_normal():
    """torchvision's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def stage_strides(output_stride) -> tuple[tuple[int, int], ...]:
    """``(stride, dilation)`` of stages conv2_x..conv5_x for an output stride of 32, 16 or 8.

    A stage that would push the stride past ``output_stride`` keeps stride 1 and multiplies
    the dilation instead, so its receptive field grows as if it had downsampled.
    """
    output_stride = 32 if output_stride is None else output_stride
    if output_stride not in (8, 16, 32):
        raise KcvError(f"output_stride {output_stride!r}: choose None (=32), 16 or 8")
    current, dilation, plan = 4, 1, []
    for stage in STAGES:
        stride = 1 if stage == 2 else 2
        if current * stride > output_stride:
            dilation *= stride
            stride = 1
        current *= stride
        plan.append((stride, dilation))
    return tuple(plan)


VARIANTS = ("v1.5", "v1")
# keras.applications' ResNet v1: conv biases and this BN epsilon (Caffe's weights)
V1 = {"bias": True, "epsilon": 1.001e-5}
V15 = {"bias": False, "epsilon": 1e-5}


def _conv_bn(x, filters, kernel, strides, dilation, name, activation="relu", deformable=False,
             zero_gamma=False, bias=False, epsilon=1e-5, padding="same"):
    """Conv → BN → activation, named like ``conv_bn_act``: ``{name}_conv/_bn/_relu``.

    ``deformable`` makes the conv a DCNv2 layer; ``zero_gamma`` starts BN's scale at 0;
    ``bias`` and ``epsilon`` are False / 1e-5 in v1.5 and True / 1.001e-5 in v1.
    """
    conv = DeformableConv2D if deformable else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation,
             use_bias=bias, kernel_initializer=he_normal(), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=epsilon, name=f"{name}_bn",
                                  gamma_initializer="zeros" if zero_gamma else "ones")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


def residual_block(x, kind, width, strides, dilation, name, *, first_dilation=None,
                   se_ratio=None, deformable=False, zero_init_residual=True, variant="v1.5"):
    """One basic or bottleneck block: residual branch (+ SE) + shortcut, then ReLU.

    Args:
        kind: ``"basic"`` (3×3, 3×3) or ``"bottleneck"`` (1×1, 3×3, 1×1 to ``4·width``).
        width: base width of the stage (64..512).
        strides: stride of the block, on its (first) 3×3 conv (v1.5).
        dilation: dilation of the 3×3 convs; ``first_dilation`` overrides it for the first
            3×3 of the block (torchvision: the block that gave up its stride keeps the
            previous stage's dilation).
        se_ratio: SE reduction ratio, ``None`` for none.
        deformable: make the 3×3 convs DCNv2.
        zero_init_residual: start the branch's last BN scale at 0, so the block begins as the
            identity (Goyal et al. 2017, arXiv:1706.02677; torchvision's ``zero_init_residual``).
        variant: ``"v1.5"`` or ``"v1"`` (stride on the first 1×1, conv biases; see the
            module docstring).
    """
    out_ch = width * EXPANSION[kind]
    first_dilation = dilation if first_dilation is None else first_dilation
    v = V1 if variant == "v1" else V15
    shortcut = x
    if strides != 1 or x.shape[-1] != out_ch:  # projection shortcut (option B), BN after it
        shortcut = _conv_bn(x, out_ch, 1, strides, 1, f"{name}_shortcut", activation=None, **v)
    if kind == "basic":
        y = _conv_bn(x, width, 3, strides, first_dilation, f"{name}_1", deformable=deformable, **v)
        y = _conv_bn(y, width, 3, 1, dilation, f"{name}_2", activation=None, deformable=deformable,
                     zero_gamma=zero_init_residual, **v)
    else:
        s1, s3 = (strides, 1) if variant == "v1" else (1, strides)
        y = _conv_bn(x, width, 1, s1, 1, f"{name}_1", **v)
        y = _conv_bn(y, width, 3, s3, first_dilation, f"{name}_2", deformable=deformable, **v)
        y = _conv_bn(y, out_ch, 1, 1, 1, f"{name}_3", activation=None, zero_gamma=zero_init_residual, **v)
    if se_ratio:
        y = squeeze_excite(y, ratio=int(se_ratio), name=f"{name}_se")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def tap_names(name: str, depth: int) -> dict[int, str]:
    """Feature taps ``{stride: layer}`` of ResNet-``depth`` built under ``name``."""
    blocks = DEPTHS[depth][1]
    taps = {2: f"{name}_stem_relu"}
    for stride, stage, n in zip((4, 8, 16, 32), STAGES, blocks):
        taps[stride] = f"{name}_stage{stage}_block{n}_out"
    return taps


def _checked(se_ratio, deformable_stages, variant="v1.5") -> tuple:
    """Validate the switches; return ``deformable_stages`` as a tuple (an int means one stage)."""
    if variant not in VARIANTS:
        raise KcvError(f"variant {variant!r}: choose 'v1.5' (torchvision) or 'v1' (keras.applications)")
    if se_ratio is not None and (isinstance(se_ratio, bool) or not isinstance(se_ratio, int)
                                 or se_ratio < 1):
        raise KcvError(f"se_ratio {se_ratio!r}: a positive integer (16 in SENet) or None")
    stages = (deformable_stages,) if isinstance(deformable_stages, int) else deformable_stages
    try:
        stages = tuple(stages or ())
    except TypeError:
        stages = (deformable_stages,)
    if any(s not in STAGES for s in stages):
        raise KcvError(f"deformable_stages {deformable_stages!r}: a list of stages 2, 3, 4, 5 "
                       "(conv2_x..conv5_x)")
    return stages


def stem(x, name: str, variant: str):
    """7×7/2 conv, BN, ReLU, 3×3/2 max pool; v1 pads symmetrically (3 and 1 px) then runs
    'valid', as keras.applications and torchvision do, v1.5 uses TF's "same"."""
    if variant == "v1.5":
        x = _conv_bn(x, 64, 7, 2, 1, f"{name}_stem")
        return layers.MaxPooling2D(3, 2, padding="same", name=f"{name}_stem_pool")(x)
    x = layers.ZeroPadding2D(3, name=f"{name}_stem_pad")(x)
    x = _conv_bn(x, 64, 7, 2, 1, f"{name}_stem", padding="valid", **V1)
    # zero padding before a max pool of ReLU outputs (>= 0) equals ignoring the border
    x = layers.ZeroPadding2D(1, name=f"{name}_stem_pool_pad")(x)
    return layers.MaxPooling2D(3, 2, name=f"{name}_stem_pool")(x)


def build_resnet(depth: int, num_classes: int, input_shape, name: str, features_only=False,
                 output_stride=None, se_ratio=None, deformable_stages=(),
                 zero_init_residual=True, variant="v1.5", preprocessing="tf") -> keras.Model:
    """Build ResNet-``depth`` (18, 34, 50, 101, 152); see the module docstring.

    Args:
        variant: ``"v1.5"`` (torchvision) or ``"v1"`` (keras.applications' ImageNet weights).
        preprocessing: input normalisation (:mod:`kcv.layers.preprocess`).

    Returns:
        The classifier (logits), or with ``features_only`` the trunk ending at conv5_x.
    """
    kind, blocks = DEPTHS[depth]
    deformable_stages = _checked(se_ratio, deformable_stages, variant)
    inputs, x = normalized_input(input_shape, preprocessing=preprocessing)
    x = stem(x, name, variant)
    previous = 1
    plan = stage_strides(output_stride)
    for stage, width, n, (stride, dilation) in zip(STAGES, WIDTHS, blocks, plan):
        for b in range(1, n + 1):
            x = residual_block(x, kind, width, stride if b == 1 else 1, dilation,
                               f"{name}_stage{stage}_block{b}",
                               first_dilation=previous if b == 1 else dilation,
                               se_ratio=se_ratio, deformable=stage in deformable_stages,
                               zero_init_residual=zero_init_residual, variant=variant)
        previous = dilation
    if features_only:
        return keras.Model(inputs, x, name=name)
    x = layers.GlobalAveragePooling2D(name=f"{name}_avgpool")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


# ---------------------------------------------------------------------------------------------
# Registered variants. Parameters: trainable weights at 224 px / 1000 classes equal torchvision's
# num_params exactly (Keras adds 2 non-trainable BN statistics per channel, which torchvision
# keeps as buffers). GFLOPs are multiply–accumulates, torchvision's convention.

# 800 shapes images at 64 px on 2 busy CPU cores: ResNet-18 ≈ 25 s/epoch, -50 ≈ 70 s, -152 ≈ 200 s
TRAIN_SMALL = {"img_size": 64, "epochs": 8, "batch_size": 32, "lr": 1e-3}
TRAIN = {"img_size": 64, "epochs": 6, "batch_size": 32, "lr": 1e-3}
TRAIN_DEEP = {"img_size": 64, "epochs": 4, "batch_size": 32, "lr": 1e-3}
PAPER = "He et al. 2015, arXiv:1512.03385 (v1.5: stride on the 3x3, as torchvision; variant=v1 as keras.applications)"


def _tv(arch, params, gflops):
    return {"params": params, "gflops": gflops, "count": "trainable",
            "source": f"torchvision {arch} IMAGENET1K_V1"}


@register("resnet18", task="classification", family="resnet", paper=PAPER, train_defaults=TRAIN_SMALL,
          taps=tap_names("resnet18", 18), reference=_tv("resnet18", 11_689_512, 1.81))
def resnet18(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
             se_ratio=None, deformable_stages=(), zero_init_residual=True,
             variant="v1.5", preprocessing="tf"):
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return build_resnet(18, num_classes, input_shape, "resnet18", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)


@register("resnet34", task="classification", family="resnet", paper=PAPER, train_defaults=TRAIN_SMALL,
          taps=tap_names("resnet34", 34), reference=_tv("resnet34", 21_797_672, 3.66))
def resnet34(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
             se_ratio=None, deformable_stages=(), zero_init_residual=True,
             variant="v1.5", preprocessing="tf"):
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return build_resnet(34, num_classes, input_shape, "resnet34", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)


@register("resnet50", task="classification", family="resnet", paper=PAPER, train_defaults=TRAIN,
          taps=tap_names("resnet50", 50), reference=_tv("resnet50", 25_557_032, 4.09))
def resnet50(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
             se_ratio=None, deformable_stages=(), zero_init_residual=True,
             variant="v1.5", preprocessing="tf"):
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    return build_resnet(50, num_classes, input_shape, "resnet50", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)


@register("resnet101", task="classification", family="resnet", paper=PAPER, train_defaults=TRAIN_DEEP,
          taps=tap_names("resnet101", 101), reference=_tv("resnet101", 44_549_160, 7.80))
def resnet101(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
              se_ratio=None, deformable_stages=(), zero_init_residual=True,
              variant="v1.5", preprocessing="tf"):
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]."""
    return build_resnet(101, num_classes, input_shape, "resnet101", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)


@register("resnet152", task="classification", family="resnet", paper=PAPER, train_defaults=TRAIN_DEEP,
          taps=tap_names("resnet152", 152), reference=_tv("resnet152", 60_192_808, 11.51))
def resnet152(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
              se_ratio=None, deformable_stages=(), zero_init_residual=True,
              variant="v1.5", preprocessing="tf"):
    """ResNet-152: bottleneck blocks [3, 8, 36, 3]."""
    return build_resnet(152, num_classes, input_shape, "resnet152", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)


@register("se_resnet50", task="classification", family="resnet", train_defaults=TRAIN,
          paper="Hu et al. 2018, arXiv:1709.01507 (SE ratio 16 in every bottleneck)",
          taps=tap_names("se_resnet50", 50),
          reference={"params": 28_088_024, "gflops": 4.11, "count": "trainable",
                     "source": "timm seresnet50 (v1.5, 28.1M / 4.1 GMACs); paper: 3.87 GFLOPs, stride on 1x1"})
def se_resnet50(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
                se_ratio=16, deformable_stages=(), zero_init_residual=True,
                variant="v1.5", preprocessing="tf"):
    """SE-ResNet-50: ResNet-50 with an SE block (ratio 16) before each residual addition."""
    return build_resnet(50, num_classes, input_shape, "se_resnet50", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)


@register("resnet50_dcn", task="classification", family="resnet", train_defaults=TRAIN,
          paper="Zhu et al. 2019, arXiv:1811.11168 (DCNv2 in every 3x3 of conv3_x..conv5_x)",
          taps=tap_names("resnet50_dcn", 50))
def resnet50_dcn(num_classes, input_shape=(224, 224, 3), features_only=False, output_stride=None,
                 se_ratio=None, deformable_stages=(3, 4, 5), zero_init_residual=True,
                 variant="v1.5", preprocessing="tf"):
    """ResNet-50 whose 3×3 convs in conv3_x..conv5_x are modulated deformable convolutions."""
    return build_resnet(50, num_classes, input_shape, "resnet50_dcn", features_only, output_stride,
                        se_ratio, deformable_stages, zero_init_residual, variant,
                        preprocessing)
