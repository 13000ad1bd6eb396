"""MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018, arXiv:1801.04381), table 2.

conv 3×3/2 32 → 17 inverted-residual blocks → conv 1×1 1280 → global pool → linear. A block
expands the channels ×t with a 1×1 conv + ReLU6 (skipped for t = 1), filters them with a
3×3 depthwise conv + ReLU6, and projects back with a LINEAR 1×1 conv (a ReLU on the narrow
bottleneck would destroy information); it adds its input when stride and channels are
unchanged. Stages (t, c, n, s): (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1)
(6,160,3,2) (6,320,1,1). ``alpha`` scales every width (rounded to multiples of 8); the last
conv stays 1280 for ``alpha ≤ 1``, as in the paper.

``output_stride`` (16 or 8; ``None`` = 32) turns the last strides into dilations, as
DeepLab v3+ does (Chen et al. 2018): once the feature map reaches that stride, a stride-2
block keeps stride 1 and every later depthwise conv is dilated by the skipped factor, so
the features keep their resolution and receptive field. Tap names do not change; the
"stride-32" tap then simply has the finer stride.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.errors import KcvError
from kcv.layers import normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

# (expansion t, channels c, repeats n, first stride s) of table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
OUTPUT_STRIDES = (None, 8, 16, 32)
BN_EPSILON = 1e-3
# He initialisation over the fan-OUT, as the reference implementations (TF EfficientNet,
# torchvision) do. Keras' "he_normal" uses the fan-in, which for a depthwise kernel
# (k, k, C, 1) is k·k·C — C times too large — and made activations vanish through the
# depthwise stack (EfficientNet-B1: ~1e-13 at the top, measured).
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going more than 10% below it."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, name=name)(x)


def inverted_residual(x, filters: int, expansion: int, strides: int, dilation: int, name: str):
    """Expand (1×1, ReLU6) → depthwise 3×3 (ReLU6) → linear project (1×1) [+ input]."""
    filters_in = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = layers.Conv2D(filters_in * expansion, 1, use_bias=False, kernel_initializer=CONV_INIT,
                          name=f"{name}_expand_conv")(x)
        x = layers.ReLU(6.0, name=f"{name}_expand_relu")(_bn(x, f"{name}_expand_bn"))
    x = layers.DepthwiseConv2D(3, strides=strides, dilation_rate=dilation, padding="same",
                               use_bias=False, depthwise_initializer=CONV_INIT,
                               name=f"{name}_dwconv")(x)
    x = layers.ReLU(6.0, name=f"{name}_dwconv_relu")(_bn(x, f"{name}_dwconv_bn"))
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=CONV_INIT,
                      name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_project_bn")  # linear bottleneck: no activation
    if strides == 1 and filters_in == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def block_plan(output_stride=None):
    """``[(t, c, stride, dilation)]`` of the 17 blocks, strides turned into dilations past
    ``output_stride``."""
    plan, current, rate = [], 2, 1  # the stem conv already has stride 2
    for t, c, n, s in STAGES:
        for i in range(n):
            stride = s if i == 0 else 1
            if output_stride is not None and current * stride > output_stride:
                plan.append((t, c, 1, rate))
                rate *= stride
            else:
                plan.append((t, c, stride, rate))
                current *= stride
    return plan


def build_mobilenet_v2(num_classes: int, input_shape, alpha: float = 1.0, output_stride=None,
                       dropout: float = 0.0, features_only: bool = False,
                       name: str = "mobilenet_v2", preprocessing: str = "tf") -> keras.Model:
    """Build MobileNetV2 (logits).

    Args:
        alpha: width multiplier (0.35 … 1.4 in the paper).
        output_stride: ``None``/32, 16 or 8 (dilation instead of stride past it).
        dropout: rate before the classifier (0 in the paper; torchvision uses 0.2).
        features_only: return the trunk ending at ``{name}_out_relu`` (any input size).
        preprocessing: input normalisation (:mod:`kcv.layers.preprocess`); keras.applications'
            ImageNet weights use the default, ``tf`` ([-1, 1]).
    """
    if output_stride not in OUTPUT_STRIDES:
        raise KcvError(f"output_stride={output_stride}: choose one of 8, 16, 32 or None")
    if not alpha > 0:
        raise KcvError(f"alpha={alpha}: must be positive")
    output_stride = None if output_stride == 32 else output_stride
    inputs, x = normalized_input(input_shape, preprocessing=preprocessing)
    x = layers.Conv2D(make_divisible(32 * alpha), 3, strides=2, padding="same", use_bias=False,
                      kernel_initializer=CONV_INIT, name=f"{name}_stem_conv")(x)
    x = layers.ReLU(6.0, name=f"{name}_stem_relu")(_bn(x, f"{name}_stem_bn"))
    for i, (t, c, stride, dilation) in enumerate(block_plan(output_stride)):
        x = inverted_residual(x, make_divisible(c * alpha), t, stride, dilation, f"{name}_block{i}")
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = layers.Conv2D(last, 1, use_bias=False, kernel_initializer=CONV_INIT, name=f"{name}_out_conv")(x)
    x = layers.ReLU(6.0, name=f"{name}_out_relu")(_bn(x, f"{name}_out_bn"))
    if features_only:
        return keras.Model(inputs, x, name=f"{name}_features")
    x = layers.GlobalAveragePooling2D(name=f"{name}_avgpool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


@register("mobilenet_v2", task="classification", family="mobilenet", min_size=32,
          paper="Sandler et al. 2018, arXiv:1801.04381",
          taps={2: "mobilenet_v2_block0_project_bn", 4: "mobilenet_v2_block2_add",
                8: "mobilenet_v2_block5_add", 16: "mobilenet_v2_block12_add",
                32: "mobilenet_v2_out_relu"},
          reference={"params": 3_504_872, "gflops": 0.30, "count": "trainable",
                     "source": "torchvision / keras.applications (trainable)"},
          train_defaults={"img_size": 64, "epochs": 10, "batch_size": 32, "lr": 1e-3})
def mobilenet_v2(num_classes, input_shape=(224, 224, 3), alpha=1.0, output_stride=None,
                 dropout=0.0, features_only=False, preprocessing="tf"):
    """MobileNetV2 at width ``alpha``; ``output_stride=16`` for a DeepLab v3+ encoder."""
    return build_mobilenet_v2(num_classes, input_shape, alpha, output_stride, dropout, features_only,
                              preprocessing=preprocessing)
