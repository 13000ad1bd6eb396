"""One way to open a runner: :func:`kcv.runtime.runners.open_runner` on every kind of model."""

import keras
import numpy as np
import pytest

from kcv.errors import KcvError
from kcv.export import onnx as onnx_export
from kcv.export.tflite import convert_fp32
from kcv.runtime import runners


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-class softmax model on 8×8 images, and its .keras, .tflite and .onnx files."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x))
    d = tmp_path_factory.mktemp("runners")
    convert_fp32(model, d / "m.tflite")
    onnx_export.convert(model, d / "m.onnx")
    return model, d


def test_every_kind_gives_the_same_probabilities(tiny):
    model, d = tiny
    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    want = np.asarray(model(x))
    opened = {"memory": runners.open_runner(model),
              "tflite": runners.open_runner(d / "m.tflite", threads=1),
              "tflite bytes": runners.open_runner((d / "m.tflite").read_bytes(), "tflite"),
              "onnx": runners.open_runner(d / "m.onnx"),
              "onnx bytes": runners.open_runner((d / "m.onnx").read_bytes(), "onnx")}
    assert isinstance(opened["tflite"], runners.LiteRTRunner) and isinstance(opened["onnx"], runners.OnnxRunner)
    for name, runner in opened.items():
        assert runner.input_shape == (8, 8, 3), name
        np.testing.assert_allclose(runner(x), want, atol=1e-5, err_msg=name)
    assert [runners.kind_of(d / f) for f in ("m.tflite", "m.onnx", "m.keras", "m.txt")] == \
        ["tflite", "onnx", "keras", None]


def test_bad_paths_are_one_line_errors_naming_the_file(tiny, tmp_path):
    _, d = tiny
    with pytest.raises(KcvError, match="m.txt: not a model file"):
        runners.open_runner(tmp_path / "m.txt")
    with pytest.raises(KcvError, match="gone.onnx: file not found"):
        runners.open_runner(tmp_path / "gone.onnx")
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(KcvError, match="bad.tflite: cannot load tflite model"):
        runners.open_runner(tmp_path / "bad.tflite")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(KcvError, match="bad.keras: cannot load model"):
        runners.open_runner(tmp_path / "bad.keras")
    with pytest.raises(ValueError, match="bytes need kind"):
        runners.open_runner(b"\0")
