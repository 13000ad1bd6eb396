"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, arXiv:1409.1556), configurations D (VGG-16) and E (VGG-19).

Five blocks of 3×3 stride-1 'same' convolutions with ReLU (64, 128, 256, 512, 512 channels),
each closed by a 2×2 stride-2 max-pool; then FC-4096, ReLU, dropout 0.5, FC-4096, ReLU,
dropout 0.5, FC-classes. Nothing but 3×3 convs and 2×2 pools: two stacked 3×3 convs see a
5×5 window and three see 7×7, with fewer parameters and more non-linearities.

The head flattens the final map, as in the paper's training network (7×7×512 = 25,088 inputs
at 224 px; parameter counts: VGG-16 138,357,544, VGG-19 143,667,240, equal to torchvision
and keras.applications). At other sizes the first FC simply has a different fan-in.
``batch_norm=True`` adds BatchNorm after each conv (torchvision's ``vgg16_bn``), which is
not in the paper but lets the net train from scratch without the paper's staged
initialisation from shallower configurations.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.layers import conv_bn_act, normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

# Convolutions per block; the channel widths are the same in every configuration.
CONFIGS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
WIDTHS = (64, 128, 256, 512, 512)


def vgg_block(x, filters: int, convs: int, batch_norm: bool, name: str):
    """``convs`` 3×3 convolutions (+ BN) with ReLU, then a 2×2 max-pool."""
    for i in range(1, convs + 1):
        if batch_norm:
            # The ReLU keeps the plain conv's name, so the feature taps hold in both modes.
            x = conv_bn_act(x, filters, 3, name=f"{name}_conv{i}", activation=None)
            x = layers.Activation("relu", name=f"{name}_conv{i}")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def build_vgg(num_classes: int, input_shape, convs_per_block, dropout: float = 0.5,
              batch_norm: bool = False, features_only: bool = False, name: str = "vgg16",
              preprocessing: str = "tf") -> keras.Model:
    """Build a VGG network (logits).

    Args:
        convs_per_block: convolutions in each of the five blocks (``CONFIGS``).
        dropout: rate after each hidden FC (0.5 in the paper).
        batch_norm: BatchNorm after each conv (not in the paper; see the module docstring).
        features_only: return the trunk ending at ``{name}_block5_pool``.
        preprocessing: input normalisation (:mod:`kcv.layers.preprocess`); ``caffe`` for
            keras.applications' ImageNet weights.
    """
    inputs, x = normalized_input(input_shape, preprocessing=preprocessing)
    for b, (filters, convs) in enumerate(zip(WIDTHS, convs_per_block), start=1):
        x = vgg_block(x, filters, convs, batch_norm, f"{name}_block{b}")
    if features_only:
        return keras.Model(inputs, x, name=f"{name}_features")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    for i in (1, 2):
        x = layers.Dense(4096, activation="relu", kernel_initializer="he_normal",
                         name=f"{name}_fc{i}")(x)
        x = layers.Dropout(dropout, name=f"{name}_fc{i}_dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


def _taps(name: str, convs) -> dict:
    # The last conv of blocks 2–5 (before their pool) and block 5's pool (stride 32).
    last = {b: f"{name}_block{b}_conv{convs[b - 1]}" for b in range(2, 6)}
    return {2: last[2], 4: last[3], 8: last[4], 16: last[5], 32: f"{name}_block5_pool"}


# Params/GMACs at 224 px with 1000 classes, as torchvision lists them.
_REFERENCE = {"vgg16": (138_357_544, 15.47), "vgg19": (143_667_240, 19.63)}
_DEFAULTS = {"img_size": 32, "epochs": 8, "batch_size": 32, "lr": 1e-4,
             "model_args": {"batch_norm": True}}


def _register(variant: str):
    convs = CONFIGS[variant]
    params, gflops = _REFERENCE[variant]

    @register(variant, task="classification", family="vgg", min_size=32,
              paper="Simonyan & Zisserman 2014, arXiv:1409.1556",
              taps=_taps(variant, convs), train_defaults=_DEFAULTS,
              reference={"params": params, "gflops": gflops, "source": "torchvision"})
    def builder(num_classes, input_shape=(224, 224, 3), dropout=0.5, batch_norm=False,
                features_only=False, preprocessing="tf"):
        return build_vgg(num_classes, input_shape, convs, dropout, batch_norm, features_only, variant,
                         preprocessing)

    builder.__name__ = builder.__qualname__ = variant
    config = "D" if variant == "vgg16" else "E"
    builder.__doc__ = f"{variant.upper()} (configuration {config} of the paper)."
    return builder


vgg16 = _register("vgg16")
vgg19 = _register("vgg19")
