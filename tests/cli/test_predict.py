"""``kcv predict``: the same top-1 from .keras, .tflite and .onnx; masks and overlays for
segmentation; one-line errors for bad models and images."""

import json

import numpy as np
import pytest
from PIL import Image

from kcv.data import shapes
from tests.conftest import run_cli
from tests.export.fixtures import cnn_exported, cnn_run, one_error, unet_exported  # noqa: F401


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six validation-split shapes images as PNG files (different sizes: predict resizes)."""
    folder = tmp_path_factory.mktemp("images")
    xs, _ = shapes.make_split(6, 40, "classification", "val")
    for i, x in enumerate(xs):
        Image.fromarray(x).save(folder / f"img{i}.png")
    return folder


def top1(out):
    return {json.loads(line)["file"]: json.loads(line)["top_k"][0]["label"] for line in out.splitlines()}


def test_same_top1_from_keras_tflite_onnx(cnn_exported, images, capsys):
    run_dir, _ = cnn_exported
    results = {}
    for model in (run_dir / "model.keras", run_dir / "exports" / "model_fp32.tflite",
                  run_dir / "exports" / "model.onnx"):
        code, out, err = run_cli(["predict", str(model), str(images), "--top-k", "2"], capsys)
        assert code == 0, err
        records = [json.loads(line) for line in out.splitlines()]
        assert len(records) == 6 and all(len(r["top_k"]) == 2 for r in records)
        assert records[0]["top_k"][0]["label"] in shapes.SHAPE_NAMES  # class names from config.json
        assert records[0]["top_k"][0]["prob"] >= records[0]["top_k"][1]["prob"]
        results[model.suffix] = top1(out)
    assert results[".keras"] == results[".tflite"] == results[".onnx"]


def test_run_uses_fastest_verified_runtime(cnn_exported, images, capsys):
    run_dir, _ = cnn_exported
    code, out, err = run_cli(["predict", str(run_dir), str(images / "img0.png")], capsys)
    assert code == 0, err
    report = json.loads((run_dir / "exports" / "report.json").read_text())
    if "benchmark" not in report:  # before `kcv benchmark`: fp32 TFLite (docs/design.md §8: fastest here)
        assert "model_fp32.tflite (tflite" in err
    code, out2, err = run_cli(["predict", str(run_dir), str(images / "img0.png"), "--runtime", "onnx"], capsys)
    assert code == 0 and "model.onnx (onnx" in err
    assert top1(out) == top1(out2)


def test_bare_file_outside_a_run(cnn_exported, images, tmp_path, capsys):
    run_dir, _ = cnn_exported
    lone = tmp_path / "lone.tflite"
    lone.write_bytes((run_dir / "exports" / "model_fp32.tflite").read_bytes())
    code, out, err = run_cli(["predict", str(lone), str(images / "img1.png"), "--top-k", "3"], capsys)
    assert code == 0, err
    labels = [p["label"] for p in json.loads(out)["top_k"]]
    # class names from the file's TFLite Metadata (labels.txt), size from its input tensor
    assert sorted(labels) == sorted(shapes.SHAPE_NAMES)
    lone = tmp_path / "lone.onnx"  # no labels in an ONNX file: generic names
    lone.write_bytes((run_dir / "exports" / "model.onnx").read_bytes())
    code, out, err = run_cli(["predict", str(lone), str(images / "img1.png"), "--top-k", "3"], capsys)
    assert code == 0, err
    assert sorted(p["label"] for p in json.loads(out)["top_k"]) == ["class_0", "class_1", "class_2"]


def test_segmentation_masks_and_overlays(unet_exported, tmp_path, capsys):
    run_dir, _ = unet_exported
    xs, _ = shapes.make_split(2, 48, "segmentation", "val")
    for i, x in enumerate(xs):
        Image.fromarray(x).save(tmp_path / f"seg{i}.jpg")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["predict", str(run_dir / "exports" / "model_int8.tflite"), str(tmp_path / "seg0.jpg"),
                              str(tmp_path / "seg1.jpg"), "--out", str(out_dir)], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    mask = Image.open(records[0]["mask"])
    assert mask.mode == "P" and mask.size == (48, 48)  # class index per pixel, original size
    assert np.asarray(mask).max() < 4 and set(records[0]["classes"]) <= set(shapes.SEGMENTATION_NAMES)
    overlay = Image.open(records[0]["overlay"])
    assert overlay.mode == "RGB" and overlay.size == (48, 48)
    assert sorted(p.name for p in out_dir.iterdir()) == ["seg0_mask.png", "seg0_overlay.png",
                                                         "seg1_mask.png", "seg1_overlay.png"]


def test_bad_inputs_are_one_line_errors(cnn_exported, images, tmp_path, capsys):
    run_dir, _ = cnn_exported
    corrupt = tmp_path / "broken.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all")
    bad_onnx = tmp_path / "broken.onnx"
    bad_onnx.write_bytes(b"\x00\x01garbage")
    bad_keras = tmp_path / "broken.keras"
    bad_keras.write_bytes(b"PK\x03\x04 truncated zip")
    not_image = tmp_path / "photo.png"
    not_image.write_text("this is text, not a PNG")
    cases = [
        ([str(tmp_path / "missing.tflite"), str(images)], "missing.tflite: file not found"),
        ([str(corrupt), str(images)], "broken.tflite: cannot load tflite model"),
        ([str(bad_onnx), str(images)], "broken.onnx: cannot load onnx model"),
        ([str(bad_keras), str(images)], "broken.keras: cannot load model"),
        ([str(run_dir), str(not_image)], "photo.png: cannot read image"),
        ([str(run_dir), str(tmp_path / "nope.png")], "nope.png: no such image or folder"),
        ([str(run_dir / "model.keras")], "name at least one image"),
        ([str(run_dir / "exports" / "model.onnx"), str(images), "--runtime", "keras"], "--runtime applies to a run"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(["predict", *argv], capsys)
        assert code == 2 and message in err and one_error(err), (argv, err)


def test_postprocess_hook_sees_image_and_probabilities(unet_exported, tmp_path):
    """The hook a dense CRF plugs into: fn(image uint8 [H,W,3], probs [H,W,C]) -> probs."""
    from kcv.runtime.predict import open_predictor, predict_images

    run_dir, _ = unet_exported
    xs, _ = shapes.make_split(1, 32, "segmentation", "val")
    Image.fromarray(xs[0]).save(tmp_path / "a.png")
    seen = []

    def all_background(image, probs):
        seen.append((image.dtype, image.shape, probs.shape))
        out = np.zeros_like(probs)
        out[..., 0] = 1
        return out

    predictor = open_predictor(run_dir, runtime="tflite")
    (result,) = predict_images(predictor, [tmp_path / "a.png"], out=tmp_path / "o", postprocess=all_background)
    assert seen == [(np.uint8, (32, 32, 3), (32, 32, 4))]
    assert result.record["classes"] == {"background": 1.0}
