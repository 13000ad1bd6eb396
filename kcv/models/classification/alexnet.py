"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NeurIPS 2012), in the single-tower form of the course's layer list.

conv 11×11/4 96 (pad 2) → max-pool 3×3/2 → conv 5×5 256 (pad 2) → max-pool → conv 3×3 384 →
conv 3×3 384 → conv 3×3 256 → max-pool → adaptive average pool to 6×6 → dropout → FC 4096 →
dropout → FC 4096 → classes, ReLU after every conv and hidden FC.

Differences from the 2012 paper, on purpose: one tower instead of two GPU halves (so conv2,
conv4 and conv5 see all input channels), no local response normalisation (it adds nothing
once inputs are normalised, and torchvision drops it too), and the adaptive 6×6 pool, which
is the identity at 224 px but lets the FC head run at any input size. The channel widths are
the paper's 96/256/384/384/256, not torchvision's 64/192/384/384/256 "one weird trick"
variant, so the parameter count differs from torchvision's 61,100,840:

    conv  34,944 + 614,656 + 885,120 + 1,327,488 + 884,992      =  3,747,200
    FC    9216·4096+4096 + 4096·4096+4096 + 4096·1000+1000     = 58,631,144
                                                        total  = 62,378,344

The smallest input is 63 px: three valid 3×3/2 pools after a stride-4 conv need the conv1
output to be at least 15 wide, i.e. ``(H + 4 − 11) / 4 + 1 ≥ 15``.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.layers import AdaptiveAvgPool2D, normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER


def alexnet_trunk(x, name: str):
    """The five convolutions and three pools; returns the stride-32 feature map."""
    x = layers.ZeroPadding2D(2, name=f"{name}_conv1_pad")(x)
    x = layers.Conv2D(96, 11, strides=4, activation="relu", kernel_initializer="he_normal",
                      name=f"{name}_conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu", kernel_initializer="he_normal",
                      name=f"{name}_conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool2")(x)
    for i, filters in ((3, 384), (4, 384), (5, 256)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
    return layers.MaxPooling2D(3, strides=2, name=f"{name}_pool3")(x)


def build_alexnet(num_classes: int, input_shape, dropout: float = 0.5, features_only: bool = False,
                  name: str = "alexnet") -> keras.Model:
    """Build AlexNet (logits).

    Args:
        num_classes: classes of the last FC layer.
        input_shape: ``(H, W, 3)`` with H, W ≥ 63 (``None`` allowed with ``features_only``).
        dropout: rate of the two dropout layers before the hidden FCs (0.5 in the paper).
        features_only: return the convolutional trunk (taps ``alexnet_conv1`` ... ``_pool3``).
    """
    inputs, x = normalized_input(input_shape)
    x = alexnet_trunk(x, name)
    if features_only:
        return keras.Model(inputs, x, name=f"{name}_features")
    # 6×6 whatever the input: the identity at 224 px, a repeat of the 1×1 map at 63–94 px.
    x = AdaptiveAvgPool2D(6, name=f"{name}_avgpool")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    for i in (6, 7):
        x = layers.Dropout(dropout, name=f"{name}_fc{i}_dropout")(x)
        x = layers.Dense(4096, activation="relu", kernel_initializer="he_normal",
                         name=f"{name}_fc{i}")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


@register("alexnet", task="classification", family="alexnet", min_size=63,
          paper="Krizhevsky, Sutskever & Hinton, NeurIPS 2012",
          taps={4: "alexnet_conv1", 8: "alexnet_conv2", 16: "alexnet_conv5", 32: "alexnet_pool3"},
          reference={"params": 62_378_344, "gflops": 1.14,
                     "source": "hand count of the 96/256/384/384/256 layer list (torchvision's "
                               "64/192-channel variant: 61,100,840 params, 0.71 GMACs)"},
          train_defaults={"img_size": 64, "epochs": 10, "batch_size": 32, "lr": 1e-4})
def alexnet(num_classes, input_shape=(224, 224, 3), dropout=0.5, features_only=False):
    """AlexNet; ``kcv train`` defaults to 64 px (the 6×6 pool then repeats the 1×1 map)."""
    return build_alexnet(num_classes, input_shape, dropout, features_only)
