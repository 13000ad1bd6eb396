"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 1998).

C1 6@5×5 → S2 2×2 average pool → C3 16@5×5 → S4 2×2 average pool → C5 120 → F6 84 → classes,
tanh activations. C3 connects to all six S2 maps (the paper's sparse connection table was
a 1998 compute trick) and the output is a linear layer instead of RBF units. Inputs other
than 32×32 simply give C5 a larger fan-in.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.layers import normalized_input
from kcv.registry import register


def build_lenet5(num_classes: int, input_shape, name: str = "lenet5") -> keras.Model:
    """Build LeNet-5 (logits)."""
    inputs, x = normalized_input(input_shape)
    x = layers.Conv2D(6, 5, activation="tanh", name=f"{name}_c1")(x)
    x = layers.AveragePooling2D(2, name=f"{name}_s2")(x)
    x = layers.Conv2D(16, 5, activation="tanh", name=f"{name}_c3")(x)
    x = layers.AveragePooling2D(2, name=f"{name}_s4")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(120, activation="tanh", name=f"{name}_c5")(x)
    x = layers.Dense(84, activation="tanh", name=f"{name}_f6")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


@register("lenet5", task="classification", family="lenet", min_size=32,
          paper="LeCun et al. 1998",
          train_defaults={"img_size": 32, "epochs": 10, "batch_size": 32, "lr": 1e-3})
def lenet5(num_classes, input_shape=(32, 32, 3)):
    """LeNet-5 at 32×32 by default, as in the paper."""
    return build_lenet5(num_classes, input_shape)
