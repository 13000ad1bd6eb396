"""Every export format, for a trained classifier and a U-Net: written, loadable in its own
runtime directly (not through kcv's runners), and within the thresholds of issue 7."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter

from kcv.data import shapes

FILES = {"tflite": "model_fp32.tflite", "fp16": "model_fp16.tflite", "dynamic": "model_dynamic.tflite",
         "int8": "model_int8.tflite", "onnx": "model.onnx", "saved_model": "saved_model"}


def run_litert(path, images):
    """Run a .tflite file with the bare LiteRT interpreter, (de)quantizing int8 tensors."""
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    probs = []
    for img in images:
        x = img[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        probs.append(y[0])
    return np.stack(probs), inp["dtype"], out["dtype"]


def check_all_formats(run_dir, result, task, num_classes):
    code, out, err = result
    assert code == 0, err
    exports = run_dir / "exports"
    report = json.loads((exports / "report.json").read_text())
    assert (exports / "report.md").is_file()
    size = json.loads((run_dir / "config.json").read_text())["img_size"]
    x, _ = shapes.make_split(3, size, task, "val")
    x = x.astype("float32")
    for name, file in FILES.items():
        entry = report["formats"][name]
        assert entry["status"] == "ok", (name, entry)
        assert (exports / file).exists(), name
        assert name in out and file in out
        if name in ("tflite", "onnx", "saved_model"):
            assert entry["max_abs_diff"] <= 1e-4, (name, entry["max_abs_diff"])
        else:  # reduced precision: one gate on agreement and metric drop
            assert entry["rule"].startswith("agreement >= ") and entry["drop_points"] <= 1.0, (name, entry)
        if name in ("tflite", "fp16", "dynamic", "int8"):
            probs, in_type, out_type = run_litert(exports / file, x)
            assert (in_type, out_type) == ((np.uint8, np.uint8) if name == "int8" else (np.float32, np.float32))
            assert entry["flex"] == [] and "CONV_2D" in entry["ops"]
        elif name == "onnx":
            sess = ort.InferenceSession(str(exports / file), providers=["CPUExecutionProvider"])
            probs = sess.run(None, {sess.get_inputs()[0].name: x})[0]
            assert entry["transposes"] <= 2, entry["ops"]  # input (+ output) layout only
        else:
            import tensorflow as tf
            loaded = tf.saved_model.load(str(exports / file))  # keep a reference: it owns the variables
            probs = loaded.serve(x).numpy()
        shape = (3, num_classes) if task == "classification" else (3, size, size, num_classes)
        assert probs.shape == shape, name
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=0.02 if name == "int8" else 1e-4)
    return report


def test_every_format_classifier(cnn_exported):
    run_dir, result = cnn_exported
    report = check_all_formats(run_dir, result, "classification", 3)
    # A trained classifier's full-int8 file: <= 1 point accuracy drop, <= 0.3x the fp32 size.
    int8 = report["formats"]["int8"]
    assert int8["metric"] == "accuracy" and int8["drop_points"] <= 1.0
    assert int8["size_vs_fp32"] <= 0.3, int8["size_vs_fp32"]
    assert report["formats"]["fp16"]["size_vs_fp32"] <= 0.6


def test_every_format_segmentation(unet_exported):
    run_dir, result = unet_exported
    report = check_all_formats(run_dir, result, "segmentation", 4)
    assert report["formats"]["int8"]["metric"] == "miou"
    # Batch-1 staging: no SHAPE/PACK ops from Conv2DTranspose, nothing left off the delegates.
    assert report["formats"]["tflite"]["gpu_unsupported"] == []
    assert report["formats"]["tflite"]["nnapi_unsupported"] == []


@pytest.mark.parametrize("argv, message", [
    (["--opset", "13"], "--opset applies only to --onnx"),
    (["--tflite", "--calib-samples", "8"], "--calib-samples applies only to --int8"),
    (["--onnx", "--int8-keep-float", "auto"], "--int8-keep-float applies only to --int8"),
    (["--tflite", "--max-drop", "2"], "--max-drop applies only to --fp16 or --dynamic or --int8"),
    (["--onnx", "--int8-io", "float"], "--int8-io applies only to --int8"),
    (["--onnx", "--check", "mediapipe"], "--check mediapipe applies only to .tflite formats"),
    (["--fp16", "--min-agreement", "1.5"], "--min-agreement 1.5"),
    (["--int8", "--calib-samples", "0"], "--int8 needs at least 1 calibration image"),
    (["--int8", "--calib-data", "no/such/folder"], "--calib-data no/such/folder"),
    (["--onnx", "--opset", "99"], "--opset 99"),
])
def test_flags_that_do_not_apply(unet_run, capsys, argv, message):
    from tests.conftest import run_cli

    before = sorted(p.name for p in (unet_run / "exports").glob("*")) if (unet_run / "exports").exists() else []
    code, out, err = run_cli(["export", str(unet_run), *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    after = sorted(p.name for p in (unet_run / "exports").glob("*")) if (unet_run / "exports").exists() else []
    assert after == before


def test_int8_without_calibration_images(unet_run, tmp_path, capsys):
    from tests.conftest import run_cli

    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    before = sorted(p.name for p in (unet_run / "exports").glob("*")) if (unet_run / "exports").exists() else []
    code, _, err = run_cli(["export", str(unet_run), "--int8", "--calib-data", str(empty)], capsys)
    assert code == 2 and "no images" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in (unet_run / "exports").glob("*")) == before
