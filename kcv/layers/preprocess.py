"""The input normalisation a weight set was trained with, as the model's first layer(s).

Every kcv model takes RGB pixels in [0, 255] (docs/design.md §6), so exported files, ``kcv predict``
and the run's config agree; what differs between weight sets is how those pixels were
normalised when the weights were trained. keras.applications leaves that to a separate
``preprocess_input`` function; here it is part of the network, one of:

- ``tf``: ``x / 127.5 − 1`` (kcv's default; MobileNetV2's ImageNet weights);
- ``caffe``: RGB → BGR, minus the ImageNet mean per channel (VGG, ResNet v1 weights, which
  were converted from Caffe);
- ``torch``: ``(x / 255 − mean) / std`` per channel (DenseNet weights, from Torch);
- ``efficientnet``: ``x / 255``, then ``(x − mean) / √variance`` with a mean and variance
  that are *weights* (stored in the EfficientNet files, as Keras ``Normalization``'s mean,
  variance and count), then ×1/√std per channel — the arithmetic of keras.applications'
  EfficientNet with ``weights="imagenet"`` (the last factor undoes a double division in the
  original TF code, keras-team/keras#49930). One layer rather than Keras's Rescaling +
  Normalization + Rescaling: ``Normalization`` keeps its statistics as tensors computed
  outside the graph, which tf2onnx turns into extra model *inputs* (measured: the ONNX file
  then asks for ``normalize_stats/Sub/y``); read from variables in ``call`` they are constants.

The constants are keras.applications' (``imagenet_utils.preprocess_input``), and the
arithmetic is done in its order, so a kcv model computes the same floats.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

PREPROCESSING = ("tf", "caffe", "torch", "efficientnet")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="kcv")
class ImageNetPreprocessing(layers.Layer):
    """``caffe``, ``torch`` or ``efficientnet`` normalisation of RGB [0, 255] pixels (see the
    module docstring).

    A layer of its own because Keras has none for a channel reversal; the reversal is a
    gather of channels (2, 1, 0), which TFLite (GATHER) and ONNX (Gather) run natively.
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "torch", "efficientnet"):
            raise ValueError(f"ImageNetPreprocessing: mode must be caffe, torch or efficientnet, got {mode!r}")
        self.mode = mode

    def build(self, input_shape):
        if self.mode == "efficientnet":  # Keras Normalization's weights, in its order
            self.mean = self.add_weight(name="mean", shape=(3,), initializer="zeros", trainable=False)
            self.variance = self.add_weight(name="variance", shape=(3,), initializer="ones", trainable=False)
            self.count = self.add_weight(name="count", shape=(), dtype="int", initializer="zeros",
                                         trainable=False)

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "efficientnet":  # Rescaling, Normalization, Rescaling, in Keras's order
            x = x * (1.0 / 255.0)
            x = (x - ops.cast(self.mean, x.dtype)) / ops.maximum(
                ops.sqrt(ops.cast(self.variance, x.dtype)), keras.config.epsilon())
            return x * ops.convert_to_tensor([1.0 / math.sqrt(s) for s in TORCH_STD], x.dtype)
        if self.mode == "caffe":
            x = ops.take(x, [2, 1, 0], axis=-1)
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, self.compute_dtype)
        x = x / 255.0
        return (x - ops.convert_to_tensor(TORCH_MEAN, self.compute_dtype)) / ops.convert_to_tensor(
            TORCH_STD, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def preprocess(inputs, preprocessing: str = "tf"):
    """Apply ``preprocessing`` to the model input; the first layer is named ``normalize``."""
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing={preprocessing!r}: choose one of {', '.join(PREPROCESSING)}")
    if preprocessing == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    return ImageNetPreprocessing(preprocessing, name="normalize")(inputs)
