"""EfficientNet-B0 … B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019, arXiv:1905.11946).

B0 (the paper's table 1): conv 3×3/2 32 → seven stages of MBConv blocks → conv 1×1 1280 →
global pool → dropout → linear. An MBConv block expands the channels ×6 with a 1×1 conv
(skipped when the ratio is 1), runs a k×k depthwise conv, squeezes-and-excites (the SE
bottleneck is a quarter of the BLOCK INPUT channels, swish inside), projects back with a
linear 1×1 conv and, when the shape is unchanged, adds the input through stochastic depth.
Every conv is followed by BN; activations are swish (SiLU).

Compound scaling: B1–B7 multiply the channels by ``width`` (rounded to multiples of 8) and
the repeats of each stage by ``depth`` (rounded up), from the paper's (width, depth,
resolution, dropout) coefficients in :data:`SCALING`. Stochastic depth drops a block's
residual branch per sample with probability 0.2 · i / N for block i of N (linearly
increasing), as in the reference TF implementation; it is Keras' ``Dropout`` with
``noise_shape=(None, 1, 1, 1)``, the exact per-sample drop-and-rescale, so no custom layer
is needed. The paper trains B_n at its native resolution (224 … 600 px, kept in
:data:`SCALING` and the docs); kcv's shapes defaults use 64 px so a CPU run takes minutes.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from kcv.layers import normalized_input, squeeze_excite
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

# B0 stages: (kernel, repeats, output channels, expand ratio, first stride).
STAGES = ((3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2),
          (5, 3, 112, 6, 1), (5, 4, 192, 6, 2), (3, 1, 320, 6, 1))
# Paper / reference implementation: (width, depth, resolution, dropout).
SCALING = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2), "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3), "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4), "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5), "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
BN_EPSILON = 1e-3  # the reference TF implementation's value
# He initialisation over the fan-OUT, as the reference implementations (TF EfficientNet,
# torchvision) do. Keras' "he_normal" uses the fan-in, which for a depthwise kernel
# (k, k, C, 1) is k·k·C — C times too large — and made the activations vanish by ~1e-13
# through B1's 23 blocks (measured), after which one SGD step overflowed.
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels × ``width``, rounded to a multiple of ``divisor`` without losing over 10%."""
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * filters else new)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks of a stage × ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def _conv_bn(x, filters: int, kernel_size: int, name: str, activation: str | None = "swish"):
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False,
                      kernel_initializer=CONV_INIT, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


def mbconv(x, filters_out: int, kernel_size: int, strides: int, expand_ratio: int,
           drop_rate: float, name: str, se_ratio: float = 0.25):
    """Mobile inverted bottleneck with squeeze-and-excitation (``{name}_...`` layers)."""
    filters_in = x.shape[-1]
    shortcut = x
    if expand_ratio != 1:
        x = _conv_bn(x, filters_in * expand_ratio, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False,
                               depthwise_initializer=CONV_INIT, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dwconv_bn")(x)
    x = layers.Activation("swish", name=f"{name}_dwconv_swish")(x)
    x = squeeze_excite(x, name=f"{name}_se", activation="swish",
                       reduced_filters=max(1, int(filters_in * se_ratio)))
    x = _conv_bn(x, filters_out, 1, f"{name}_project", activation=None)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch of a sample, rescale the rest.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def stage_plan(width: float, depth: float):
    """``[(stage, block_name_suffix, kernel, stride, expand, filters_out)]`` of every block."""
    plan = []
    for s, (k, repeats, filters, expand, stride) in enumerate(STAGES, start=1):
        for i in range(round_repeats(repeats, depth)):
            plan.append((s, f"block{s}{chr(ord('a') + i)}", k, stride if i == 0 else 1, expand,
                         round_filters(filters, width)))
    return plan


def build_efficientnet(num_classes: int, input_shape, width: float, depth: float,
                       dropout: float, drop_connect_rate: float = 0.2, features_only: bool = False,
                       name: str = "efficientnet_b0", preprocessing: str = "tf") -> keras.Model:
    """Build an EfficientNet (logits).

    Args:
        width, depth: compound-scaling coefficients of channels and stage repeats.
        dropout: rate before the linear classifier.
        drop_connect_rate: stochastic-depth rate of the last block (0.2 in the paper).
        features_only: return the trunk ending at ``{name}_top_swish`` (any input size).
        preprocessing: input normalisation (:mod:`kcv.layers.preprocess`); ``efficientnet``
            (the Normalization statistics stored in the weight file) for keras.applications'
            ImageNet weights.
    """
    inputs, x = normalized_input(input_shape, preprocessing=preprocessing)
    x = layers.Conv2D(round_filters(32, width), 3, strides=2, padding="same", use_bias=False,
                      kernel_initializer=CONV_INIT, name=f"{name}_stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_stem_bn")(x)
    x = layers.Activation("swish", name=f"{name}_stem_swish")(x)
    plan = stage_plan(width, depth)
    for i, (_, block, k, stride, expand, filters) in enumerate(plan):
        x = mbconv(x, filters, k, stride, expand, drop_connect_rate * i / len(plan), f"{name}_{block}")
    x = _conv_bn(x, round_filters(1280, width), 1, f"{name}_top")
    if features_only:
        return keras.Model(inputs, x, name=f"{name}_features")
    x = layers.GlobalAveragePooling2D(name=f"{name}_avgpool")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


def _taps(name: str, width: float, depth: float) -> dict:
    # The output layer of the last block of stages 1, 2, 3 and 5, and the top conv.
    last = {}
    for s, block, _, stride, expand, filters in stage_plan(width, depth):
        residual = block[-1] != "a"  # later blocks of a stage keep stride 1 and channels
        last[s] = f"{name}_{block}_" + ("add" if residual else "project_bn")
    return {2: last[1], 4: last[2], 8: last[3], 16: last[5], 32: f"{name}_top_swish"}


# Trainable params (torchvision; Keras adds BN moving statistics) and the paper's table 2
# FLOPs (multiply-adds, at each variant's native resolution).
_REFERENCE = {
    "efficientnet_b0": (5_288_548, 0.39), "efficientnet_b1": (7_794_184, 0.70),
    "efficientnet_b2": (9_109_994, 1.0), "efficientnet_b3": (12_233_232, 1.8),
    "efficientnet_b4": (19_341_616, 4.2), "efficientnet_b5": (30_389_784, 9.9),
    "efficientnet_b6": (43_040_704, 19.0), "efficientnet_b7": (66_347_960, 37.0),
}
_DEFAULTS = {"img_size": 64, "epochs": 10, "batch_size": 32, "lr": 1e-3}


def _register(variant: str):
    width, depth, resolution, dropout_rate = SCALING[variant]
    params, gflops = _REFERENCE[variant]

    @register(variant, task="classification", family="efficientnet", min_size=32,
              paper="Tan & Le 2019, arXiv:1905.11946", taps=_taps(variant, width, depth),
              train_defaults=_DEFAULTS,
              reference={"params": params, "gflops": gflops, "img_size": resolution,
                         "source": f"params: torchvision (trainable); GFLOPs: paper table 2 "
                                   f"at {resolution} px"})
    def builder(num_classes, input_shape=(224, 224, 3), dropout=dropout_rate,
                drop_connect_rate=0.2, features_only=False, preprocessing="tf"):
        return build_efficientnet(num_classes, input_shape, width, depth, dropout,
                                  drop_connect_rate, features_only, variant, preprocessing)

    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = (f"EfficientNet-{variant[-2:].upper()}: width {width}, depth {depth}, "
                       f"paper resolution {resolution} px, dropout {dropout_rate}.")
    return builder


for _variant in SCALING:
    globals()[_variant] = _register(_variant)
