"""Edge consumers of kcv's exports (issue 15): every ``.tflite`` carries TFLite Metadata
that MediaPipe Tasks read (labels, normalisation), int8 files take uint8 pixels, and one
gate judges reduced-precision files on agreement and metric change."""

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from kcv.data import shapes
from kcv.export import gate, mediapipe_check, metadata, verify
from tests.conftest import run_cli

TFLITE = {"tflite": "model_fp32.tflite", "fp16": "model_fp16.tflite", "dynamic": "model_dynamic.tflite",
          "int8": "model_int8.tflite"}


def _val_images(run_dir, n=24):
    cfg = json.loads((run_dir / "config.json").read_text())
    images, _ = shapes.make_split(n, cfg["img_size"], cfg["task"], "val")
    return cfg, images


@pytest.mark.parametrize("fixture", ["cnn_exported", "unet_exported"])
def test_mediapipe_tasks_load_every_tflite_and_agree_with_litert(fixture, request):
    run_dir, (code, _, err) = request.getfixturevalue(fixture)
    assert code == 0, err
    cfg, images = _val_images(run_dir)
    for name, file in TFLITE.items():
        path = run_dir / "exports" / file
        result = mediapipe_check.check(path, cfg["task"], images, cfg["class_names"])
        assert "error" not in result, (name, result)
        assert result["agreement"] >= 0.99, (name, result)
        if cfg["task"] == "classification":
            # MediaPipe names the class from labels.txt in the file, not an index
            classes, labels = mediapipe_check.run_mediapipe(path, cfg["task"], images[:4])
            assert labels == [cfg["class_names"][i] for i in classes] and set(labels) <= set(cfg["class_names"])
            assert result["labels_ok"]


@pytest.mark.parametrize("fixture", ["cnn_exported", "unet_exported"])
def test_metadata_reads_back_in_mediapipe_schema(fixture, request):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as mfb

    from kcv.export import tflite_model

    run_dir, _ = request.getfixturevalue(fixture)
    cfg = json.loads((run_dir / "config.json").read_text())
    for name, file in TFLITE.items():
        data = (run_dir / "exports" / file).read_bytes()
        meta = metadata.read(data)
        assert meta["labels"] == cfg["class_names"] and meta["name"] == cfg["arch"]
        assert meta["inputs"][0]["mean"] == [0.0] and meta["inputs"][0]["std"] == [1.0]
        # an independent parser: MediaPipe's generated code for metadata_schema.fbs
        raw = tflite_model.read_metadata(metadata.strip_files(data), metadata.METADATA_NAME)
        assert mfb.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0)
        m = mfb.ModelMetadataT.InitFromPackedBuf(bytearray(raw), 0)
        inp, out = m.subgraphMetadata[0].inputTensorMetadata[0], m.subgraphMetadata[0].outputTensorMetadata[0]
        assert inp.content.contentProperties.colorSpace == mfb.ColorSpaceType.RGB
        assert list(inp.processUnits[0].options.std) == [1.0]
        assert out.associatedFiles[0].name == b"labels.txt"
        assert out.associatedFiles[0].type == mfb.AssociatedFileType.TENSOR_AXIS_LABELS
        report = json.loads((run_dir / "exports" / "report.json").read_text())["formats"][name]
        assert report["metadata"]["labels"] == len(cfg["class_names"])


def test_int8_file_takes_uint8_pixels(cnn_exported):
    run_dir, _ = cnn_exported
    interp = Interpreter(model_path=str(run_dir / "exports" / "model_int8.tflite"))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    # raw pixels are uint8 numbers: scale 1, zero point 0, no quantisation on the way in
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)
    assert out["dtype"] == np.uint8


def test_int8_io_float_output_and_mediapipe_check(cnn_run, capsys):
    code, out, err = run_cli(["export", str(cnn_run), "--int8", "--int8-io", "float", "--check", "mediapipe"],
                             capsys)
    assert code == 0, err
    entry = json.loads((cnn_run / "exports" / "report.json").read_text())["formats"]["int8"]
    assert (entry["input_type"], entry["output_type"]) == ("uint8", "float32")
    assert entry["mediapipe"]["ok"] and entry["mediapipe"]["agreement"] >= 0.99
    assert "int8: MediaPipe Tasks: agrees with LiteRT" in out
    # back to the default for the other tests of this session's run
    code, _, err = run_cli(["export", str(cnn_run), "--int8"], capsys)
    assert code == 0, err


# --- the gate (kcv.export.gate) on the two cases of issue 15 --------------------------------

def _segmentation_case(agreement, seed=0, classes=4, n=6, size=64):
    """Keras-like probabilities on ``n`` images and a candidate whose argmax agrees on
    ``agreement`` of the pixels; targets make the model weak (mIoU near its floor)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, (n, size, size))
    logits = rng.normal(size=(n, size, size, classes)).astype(np.float32)
    ref = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    cand = ref.copy()
    flip = rng.random((n, size, size)) > agreement
    cand[flip] = np.roll(ref[flip], 1, axis=-1)  # another class on top on flipped pixels
    return ref, cand, targets, flip


def test_gate_passes_fp16_at_999_agreement_despite_max_diff():
    ref, _, targets, _ = _segmentation_case(1.0)
    # fp16-like: tiny differences everywhere, 0.06 on a few boundary pixels, 99.9 % agreement
    noise = np.random.default_rng(1).normal(0, 1e-4, ref.shape).astype(np.float32)
    cand = np.clip(ref + noise, 0, 1)
    idx = np.argwhere(np.ones(ref.shape[:3], bool))[:: 1000]  # 0.1 % of pixels
    for i, y, x in idx:
        cand[i, y, x] = np.roll(ref[i, y, x], 1)
    entry = verify.compare(ref, cand, targets, "segmentation", 4)
    assert 0.998 <= entry["agreement"] < 1.0 and entry["max_abs_diff"] > 2e-2
    floor = gate.baseline(targets, "segmentation", 4)
    verdict = gate.judge(entry, floor, max_drop=1.0, min_agreement=gate.MIN_AGREEMENT, allow=False)
    assert verdict["status"] == "ok", verdict


def test_gate_refuses_74_percent_agreement_even_if_the_metric_rises():
    ref, cand, targets, flip = _segmentation_case(0.74)
    # make the flipped pixels right: the candidate's metric rises although it disagrees a lot
    targets = np.where(flip, cand.argmax(-1), targets)
    entry = verify.compare(ref, cand, targets, "segmentation", 4)
    assert abs(entry["agreement"] - 0.74) < 0.01 and entry["metric_delta"] > 0
    floor = gate.baseline(targets, "segmentation", 4)
    verdict = gate.judge(entry, floor, max_drop=1.0, min_agreement=gate.MIN_AGREEMENT, allow=False)
    assert verdict["status"] == "failed" and "agreement with Keras 7" in verdict["reason"]
    # random-logit "model": its mIoU is near the majority baseline, and the entry says so
    assert not verdict["metric_judges"] and "too weak" in verdict["note"]
    accepted = gate.judge(entry, floor, max_drop=1.0, min_agreement=gate.MIN_AGREEMENT, allow=True)
    assert accepted["status"] == "accepted" and "not met" in accepted["rule"]


def test_gate_judges_a_strong_model_on_its_metric_too():
    targets = np.repeat(np.arange(4), 25)
    ref = np.eye(4, dtype=np.float32)[targets] * 0.9 + 0.025  # accuracy 1.0, far above chance
    cand = ref.copy()
    cand[:2] = np.roll(cand[:2], 1, axis=-1)  # 98 % agreement, accuracy drops 2 points
    entry = verify.compare(ref, cand, targets, "classification", 4)
    verdict = gate.judge(entry, gate.baseline(targets, "classification", 4), 1.0, 0.98, False)
    assert verdict["metric_judges"] and verdict["status"] == "failed"
    assert "accuracy dropped 2.00 points" in verdict["reason"] and "agreement" not in verdict["reason"]


def test_onnx_int8_static_qdq_per_channel(cnn_exported):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    run_dir, (code, out, err) = cnn_exported
    assert code == 0, err
    entry = json.loads((run_dir / "exports" / "report.json").read_text())["formats"]["onnx_int8"]
    assert entry["status"] == "ok" and entry["rule"].startswith("agreement >= "), entry
    assert entry["size_vs_fp32"] <= 0.3, entry["size_vs_fp32"]
    assert entry["ops"]["QuantizeLinear"] >= 1 and entry["ops"]["DequantizeLinear"] >= 1
    model = onnx.load(str(run_dir / "exports" / "model_int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
             and inits[n.input[0]].ndim == 4]
    assert convs and all(inits[n.input[0]].dtype == np.int8 for n in convs)
    # per-channel: one scale per output channel of every conv kernel
    assert all(inits[n.input[1]].shape == (inits[n.input[0]].shape[0],) for n in convs)
    cfg, images = _val_images(run_dir, 32)
    sessions = [ort.InferenceSession(str(run_dir / "exports" / f), providers=["CPUExecutionProvider"])
                for f in ("model.onnx", "model_int8.onnx")]
    name = sessions[0].get_inputs()[0].name
    top = [np.concatenate([s.run(None, {name: x[None].astype(np.float32)})[0] for x in images]).argmax(-1)
           for s in sessions]
    assert np.mean(top[0] == top[1]) >= 0.95
