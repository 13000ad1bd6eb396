"""DenseNet (Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017, arXiv:1608.06993), the DenseNet-BC variants of its table 1.

Stem: conv 7×7/2 (2k = 64 channels), BN, ReLU, max-pool 3×3/2. Then four dense blocks
separated by transitions. Inside a block every layer sees the concatenation of all
earlier feature maps and adds ``growth_rate`` (k = 32) new ones through a pre-activation
bottleneck BN–ReLU–conv 1×1 (4k) – BN–ReLU–conv 3×3 (k). A transition (BN–ReLU–conv 1×1
–avg-pool 2×2/2) halves the resolution and compresses the channels by θ = 0.5. The head is
BN–ReLU–global average pool–linear. Convolutions have no bias (BN follows), as in the
reference implementations: 7,978,856 / 14,149,480 / 20,013,928 trainable parameters for
DenseNet-121/169/201 at 1000 classes (torchvision; keras.applications adds the BN moving
statistics on top).

For keras.applications' ImageNet weights (``weights="imagenet"``, :mod:`kcv.models.imagenet`)
three options reproduce its network exactly: ``stem_padding="symmetric"`` zero-pads the stem
conv by 3 and the stem pool by 1 pixel on every side and runs them 'valid' (TF's "same"
pads a stride-2 layer on an even input only at the bottom/right, which shifts the sampling
grid by a pixel), ``bn_epsilon=1.001e-5`` and ``preprocessing="torch"`` (ImageNet mean/std,
:mod:`kcv.layers.preprocess`).
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.errors import KcvError
from kcv.layers import conv_bn_act, normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

STEM_PADDINGS = ("same", "symmetric")
BLOCKS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32),
          "densenet201": (6, 12, 48, 32)}


def bn_relu_conv(x, filters: int, kernel_size: int, name: str, epsilon: float = 1e-5):
    """Pre-activation unit: BN → ReLU → conv (no bias), named ``{name}_bn/_relu/_conv``."""
    x = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Conv2D(filters, kernel_size, padding="same", use_bias=False,
                         kernel_initializer="he_normal", name=f"{name}_conv")(x)


def dense_block(x, layers_count: int, growth_rate: int, name: str, epsilon: float = 1e-5):
    """``layers_count`` bottleneck layers, each concatenating ``growth_rate`` new channels."""
    for i in range(1, layers_count + 1):
        y = bn_relu_conv(x, 4 * growth_rate, 1, f"{name}_layer{i}_1", epsilon)
        y = bn_relu_conv(y, growth_rate, 3, f"{name}_layer{i}_2", epsilon)
        x = layers.Concatenate(name=f"{name}_layer{i}_concat")([x, y])
    return x


def transition(x, compression: float, name: str, epsilon: float = 1e-5):
    """BN–ReLU–1×1 conv to ``compression``× the channels, then 2×2 average pool."""
    x = bn_relu_conv(x, int(x.shape[-1] * compression), 1, name, epsilon)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


def stem(x, filters: int, name: str, padding: str = "same", epsilon: float = 1e-5):
    """conv 7×7/2 → BN → ReLU → max-pool 3×3/2 (``{name}_conv0_*``, ``{name}_pool0``)."""
    if padding not in STEM_PADDINGS:
        raise KcvError(f"stem_padding={padding!r}: choose one of {', '.join(STEM_PADDINGS)}")
    if padding == "same":
        x = conv_bn_act(x, filters, 7, strides=2, name=f"{name}_conv0")
        return layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool0")(x)
    x = layers.ZeroPadding2D(3, name=f"{name}_conv0_pad")(x)
    x = layers.Conv2D(filters, 7, strides=2, use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv0_conv")(x)
    x = layers.BatchNormalization(epsilon=epsilon, name=f"{name}_conv0_bn")(x)
    x = layers.Activation("relu", name=f"{name}_conv0_relu")(x)
    # zero padding before a max pool of ReLU outputs (>= 0) equals ignoring the border
    x = layers.ZeroPadding2D(1, name=f"{name}_pool0_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name=f"{name}_pool0")(x)


def build_densenet(num_classes: int, input_shape, blocks, growth_rate: int = 32,
                   compression: float = 0.5, features_only: bool = False,
                   name: str = "densenet121", stem_padding: str = "same",
                   bn_epsilon: float = 1e-5, preprocessing: str = "tf") -> keras.Model:
    """Build a DenseNet-BC (logits).

    Args:
        blocks: layers in each of the four dense blocks (``BLOCKS``).
        growth_rate: k, channels each layer adds (32 in the paper's ImageNet models).
        compression: θ, channel factor of each transition (0.5 for DenseNet-BC).
        features_only: return the trunk ending at ``{name}_final_relu`` (any input size).
        stem_padding, bn_epsilon, preprocessing: see the module docstring.
    """
    inputs, x = normalized_input(input_shape, preprocessing=preprocessing)
    x = stem(x, 2 * growth_rate, name, stem_padding, bn_epsilon)
    for b, count in enumerate(blocks, start=1):
        x = dense_block(x, count, growth_rate, f"{name}_block{b}", bn_epsilon)
        if b < len(blocks):
            x = transition(x, compression, f"{name}_transition{b}", bn_epsilon)
    x = layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_final_bn")(x)
    x = layers.Activation("relu", name=f"{name}_final_relu")(x)
    if features_only:
        return keras.Model(inputs, x, name=f"{name}_features")
    x = layers.GlobalAveragePooling2D(name=f"{name}_avgpool")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


def _taps(name: str) -> dict:
    # Strides 4/8/16: the BN–ReLU a transition applies to the block output, i.e. the
    # normalised features of dense blocks 1–3; stride 32: the final BN–ReLU.
    return {2: f"{name}_conv0_relu", 4: f"{name}_transition1_relu", 8: f"{name}_transition2_relu",
            16: f"{name}_transition3_relu", 32: f"{name}_final_relu"}


# Trainable params and GMACs at 224 px, 1000 classes (torchvision).
_REFERENCE = {"densenet121": (7_978_856, 2.83), "densenet169": (14_149_480, 3.36),
              "densenet201": (20_013_928, 4.29)}
_DEFAULTS = {"img_size": 64, "epochs": 8, "batch_size": 32, "lr": 1e-3}


def _register(variant: str):
    blocks = BLOCKS[variant]
    params, gflops = _REFERENCE[variant]

    @register(variant, task="classification", family="densenet", min_size=32,
              paper="Huang et al. 2017, arXiv:1608.06993", taps=_taps(variant),
              train_defaults=_DEFAULTS,
              reference={"params": params, "gflops": gflops,
                         "count": "trainable",
                         "source": "torchvision (trainable; Keras adds BN moving statistics)"})
    def builder(num_classes, input_shape=(224, 224, 3), growth_rate=32, compression=0.5,
                features_only=False, stem_padding="same", bn_epsilon=1e-5, preprocessing="tf"):
        return build_densenet(num_classes, input_shape, blocks, growth_rate, compression,
                              features_only, variant, stem_padding, bn_epsilon, preprocessing)

    builder.__name__ = builder.__qualname__ = variant
    builder.__doc__ = f"DenseNet-BC-{variant[8:]} (blocks {blocks}, k = 32, θ = 0.5)."
    return builder


densenet121 = _register("densenet121")
densenet169 = _register("densenet169")
densenet201 = _register("densenet201")
