"""Full-int8 triage: the quantization debugger names the worst layers, and
``--int8-keep-float`` keeps layers in float and says which."""

import json

import numpy as np
from PIL import Image

from kcv.export.ops import list_ops
from tests.conftest import run_cli
from tests.export.fixtures import one_error


def dark_calibration(folder, n=6):
    """Calibration images unlike the data: flat dark frames with one white and one black
    pixel (so the input range still spans 0-255). Activation ranges calibrate far too
    small and real images clip — the classic "wrong calibration set" failure."""
    folder.mkdir()
    for i in range(n):
        a = np.full((32, 32, 3), 20 + 2 * i, np.uint8)
        a[0, 0], a[-1, -1] = 255, 0
        Image.fromarray(a).save(folder / f"dark{i}.png")
    return folder


def test_bad_calibration_fails_with_triage(cnn_exported, tmp_path, capsys):
    run_dir, _ = cnn_exported
    exports = run_dir / "exports"
    good = (exports / "model_int8.tflite").read_bytes()
    code, out, err = run_cli(["export", str(run_dir), "--int8", "--calib-data", str(dark_calibration(tmp_path / "d")),
                              "--max-drop", "0.5"], capsys)
    assert code == 2 and "error: int8: " in err and "accuracy dropped" in err and one_error(err), err
    assert "largest quantization errors" in out and "--int8-keep-float auto" in out
    entry = json.loads((exports / "report.json").read_text())["formats"]["int8"]
    assert entry["status"] == "failed" and len(entry["worst_layers"]) == 5
    worst = entry["worst_layers"]
    assert worst[0]["rmse_scale"] > 0.7 and worst == sorted(worst, key=lambda w: -w["rmse_scale"])
    # the failed file was not installed: the previous good one is still there, byte for byte
    assert (exports / "model_int8.tflite").read_bytes() == good
    assert not [p for p in exports.iterdir() if p.name.startswith(".")]


def test_keep_float_auto_and_by_name(cnn_exported, capsys):
    run_dir, _ = cnn_exported
    exports = run_dir / "exports"
    code, out, err = run_cli(["export", str(run_dir), "--int8", "--int8-keep-float", "auto"], capsys)
    assert code == 0, err
    entry = json.loads((exports / "report.json").read_text())["formats"]["int8"]
    assert entry["status"] == "ok" and entry["drop_points"] <= 1.0
    assert len(entry["kept_float"]) >= 1 and entry["keep_float_steps"][0]["kept"] == 1
    assert "kept in float: " + entry["kept_float"][0]["layer"] in out
    ops = list_ops((exports / "model_int8.tflite").read_bytes())
    assert "DEQUANTIZE" in ops and "QUANTIZE" in ops  # a float island inside the int8 graph

    code, out, err = run_cli(["export", str(run_dir), "--int8", "--int8-keep-float", "logits"], capsys)
    assert code == 0, err
    entry = json.loads((exports / "report.json").read_text())["formats"]["int8"]
    assert [k["layer"] for k in entry["kept_float"]] == ["logits"]

    code, _, err = run_cli(["export", str(run_dir), "--int8", "--int8-keep-float", "nosuchlayer"], capsys)
    assert code == 2 and "no quantized layer named nosuchlayer" in err and one_error(err)
