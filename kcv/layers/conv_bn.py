"""Convolution + batch norm + activation, and the normalising input every model starts with."""

from __future__ import annotations

import keras
from keras import layers


def normalized_input(input_shape, name: str = "image", preprocessing: str = "tf"):
    """``(inputs, x)``: the model input (RGB in [0, 255]) and its normalised value, by
    default scaled to [-1, 1]; ``preprocessing`` selects what a weight set was trained with
    (:mod:`kcv.layers.preprocess`).

    Normalisation lives inside the model so that every exported file takes raw pixels
    (docs/design.md §6).
    """
    from kcv.layers.preprocess import preprocess

    inputs = keras.Input(shape=tuple(input_shape), name=name)
    return inputs, preprocess(inputs, preprocessing)


def conv_bn_act(x, filters: int, kernel_size=3, strides=1, name: str = "conv",
                activation: str | None = "relu", padding: str = "same", dilation_rate=1,
                kernel_initializer="he_normal", momentum: float = 0.99):
    """Conv (no bias: BN's beta replaces it) → BatchNorm → activation.

    Layers are named ``{name}_conv``, ``{name}_bn``, ``{name}_{activation}`` so weights and
    feature taps can be found by name. ``momentum`` is BN's moving-average momentum (Keras'
    0.99 by default; the segmentation decoders use torchvision's 0.9 for short runs).
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      dilation_rate=dilation_rate, use_bias=False,
                      kernel_initializer=kernel_initializer, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x
