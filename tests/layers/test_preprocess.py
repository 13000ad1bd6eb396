"""The ImageNet input normalisations as model layers: keras.applications' arithmetic, and
TFLite fp32 / ONNX files that take raw RGB and compute what Keras computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kcv.export import onnx as onnx_export
from kcv.export import tflite
from kcv.layers.preprocess import preprocess
from kcv.runtime.runners import LiteRTRunner, OnnxRunner

MODULE = {"caffe": "vgg16", "torch": "densenet", "tf": "mobilenet_v2"}


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_equals_keras_applications_preprocess_input(mode):
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    ours = keras.Model(inputs, preprocess(inputs, mode))(x)
    want = getattr(keras.applications, MODULE[mode]).preprocess_input(x.copy())
    # caffe and torch do keras.applications' operations in its order: the same floats; kcv's
    # [-1, 1] layer multiplies by 1/127.5 where preprocess_input divides (one ulp apart)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(want), rtol=0, atol=0 if mode != "tf" else 1e-6)


@pytest.mark.parametrize("mode", ["caffe", "torch", "efficientnet"])
def test_exports_take_raw_rgb(tmp_path, mode):
    inputs = keras.Input((16, 16, 3), name="image")
    x = preprocess(inputs, mode)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(x)))
    if mode == "efficientnet":  # statistics as an EfficientNet file stores them
        model.get_layer("normalize").set_weights([np.array([0.4, 0.5, 0.45]), np.array([0.05, 0.06, 0.07]),
                                                  np.array(5)])
    images = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    want = np.asarray(model(images))
    tflite.convert_fp32(model, tmp_path / "m.tflite")
    onnx_export.convert(model, tmp_path / "m.onnx")
    for runner in (LiteRTRunner(tmp_path / "m.tflite"), OnnxRunner(tmp_path / "m.onnx")):
        got = np.concatenate([runner(images[i:i + 1]) for i in range(len(images))])
        np.testing.assert_allclose(got, want, atol=1e-5)
