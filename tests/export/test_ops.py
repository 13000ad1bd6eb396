"""The op check before a TFLite file is written: Flex ops are refused unless --allow-flex,
and ops the GPU/NNAPI delegates lack are listed."""

import json

import keras
import numpy as np
import pytest

from kcv import runs
from kcv.export import ops
from tests.conftest import run_cli
from tests.export.fixtures import one_error


@keras.saving.register_keras_serializable(package="kcv_test")
class Determinant(keras.layers.Layer):
    """det of a 2x2 matrix: TFLite has no builtin for MatrixDeterminant, so it needs Flex."""

    def call(self, x):
        return keras.ops.expand_dims(keras.ops.linalg.det(keras.ops.reshape(x, (-1, 2, 2))), -1)


@pytest.fixture(scope="module")
def flex_run(tmp_path_factory):
    """A run directory (config + model.keras) whose model needs a Flex op."""
    run = tmp_path_factory.mktemp("runs") / "flexnet"
    run.mkdir()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    det = Determinant(name="det")(keras.layers.Dense(4, name="d4")(x))
    logits = keras.layers.Concatenate(name="logits")([keras.layers.Dense(2, name="d2")(x), det])
    runs.save_model(keras.Model(inputs, logits), run / "model.keras")
    runs.write_json(run / "config.json", {
        "arch": "flexnet", "task": "classification", "data": "shapes:16", "img_size": 32, "seed": 0,
        "val_split": 0.2, "num_classes": 3, "class_names": ["circle", "square", "triangle"]})
    return run


def test_flex_refused_then_allowed(flex_run, capsys):
    code, out, err = run_cli(["export", str(flex_run), "--tflite"], capsys)
    assert code == 2 and "FlexMatrixDeterminant" in err and "--allow-flex" in err and one_error(err)
    assert not (flex_run / "exports" / "model_fp32.tflite").exists()
    assert sorted(p.name for p in (flex_run / "exports").iterdir()) == ["report.json", "report.md"]
    entry = json.loads((flex_run / "exports" / "report.json").read_text())["formats"]["tflite"]
    assert entry["status"] == "refused" and entry["flex"] == ["FlexMatrixDeterminant"]

    code, out, err = run_cli(["export", str(flex_run), "--tflite", "--allow-flex"], capsys)
    # Installed on request, but no Flex delegate exists in this Python runtime to verify it.
    assert code == 0, err
    entry = json.loads((flex_run / "exports" / "report.json").read_text())["formats"]["tflite"]
    assert entry["status"] == "unverified" and (flex_run / "exports" / "model_fp32.tflite").is_file()
    assert "FlexMatrixDeterminant" in entry["gpu_unsupported"] and "FlexMatrixDeterminant" in out


def test_delegate_tables(tmp_path):
    from kcv.export.tflite import convert_fp32

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Conv2D(2, 3)(inputs)))
    model(np.zeros((1, 8, 8, 3), "float32"))
    convert_fp32(model, tmp_path / "m.tflite")
    checked = ops.check_ops((tmp_path / "m.tflite").read_bytes())
    assert checked["flex"] == [] and {"CONV_2D", "SOFTMAX"} <= set(checked["ops"])
    assert checked["gpu_unsupported"] == [] and checked["nnapi_unsupported"] == []
    # the tables are the delegates' dispatch code: ARG_MAX runs on NNAPI but not on the GPU
    assert "ARG_MAX" not in ops.GPU_OPS and "ARG_MAX" in ops.NNAPI_OPS
