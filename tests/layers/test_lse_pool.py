"""GlobalLSEPooling2D against a float64 NumPy reference, its limits, saving and export."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kcv.layers import GlobalLSEPooling2D


def reference(x, r):
    x = x.astype(np.float64)
    h, w = x.shape[1:3]
    return np.log(np.exp(r * x).sum(axis=(1, 2)) / (h * w)) / r


@pytest.mark.parametrize("r", [0.5, 3.0, 10.0])
def test_matches_the_formula(r, rng):
    x = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    np.testing.assert_allclose(GlobalLSEPooling2D(r)(x), reference(x, r), rtol=1e-5, atol=1e-6)


def test_between_mean_and_max_and_stable(rng):
    x = rng.normal(size=(3, 8, 8, 4)).astype("float32")
    mean, top = x.mean(axis=(1, 2)), x.max(axis=(1, 2))
    np.testing.assert_allclose(GlobalLSEPooling2D(1e-3)(x), mean, atol=1e-3)  # r → 0: average
    sharp = np.asarray(GlobalLSEPooling2D(1e3)(x))  # r → ∞: maximum, within log(HW)/r
    assert np.all(sharp <= top + 1e-5) and np.all(sharp >= top - np.log(64) / 1e3 - 1e-5)
    big = np.full((1, 4, 4, 2), 500.0, np.float32)  # exp(10·500) overflows float32 without the max shift
    np.testing.assert_allclose(GlobalLSEPooling2D(10.0)(big), [[500.0, 500.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="r must be positive"):
        GlobalLSEPooling2D(0.0)


def test_saves_and_exports_to_tflite_and_onnx(tmp_path, rng):
    from kcv.export import onnx
    from kcv.export.tflite import convert_fp32
    from kcv.runtime.runners import LiteRTRunner, OnnxRunner
    from tests.layers.test_deformable import assert_builtin_only, tflite_ops

    inp = keras.Input((6, 6, 3))
    maps = keras.layers.Conv2D(2, 1, name="class_maps")(inp)
    model = keras.Model(inp, GlobalLSEPooling2D(4.0, name="logits")(maps))
    x = rng.uniform(-2, 2, (2, 6, 6, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert again.get_layer("logits").r == 4.0
    np.testing.assert_allclose(again(x), model(x), atol=1e-6)
    convert_fp32(model, tmp_path / "m.tflite")
    assert_builtin_only(tflite_ops(tmp_path / "m.tflite"))
    np.testing.assert_allclose(LiteRTRunner(tmp_path / "m.tflite")(x), model(x), atol=1e-5)
    onnx.convert(model, tmp_path / "m.onnx")
    np.testing.assert_allclose(OnnxRunner(tmp_path / "m.onnx")(x), model(x), atol=1e-5)
