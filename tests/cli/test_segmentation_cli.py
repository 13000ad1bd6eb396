"""Segmentation on the command line: ``kcv train --loss/--class-weights`` (recorded in
config.json, bad values one line + exit 2) and ``kcv eval [--crf]`` (metrics, confusion
matrix, a mask and an overlay PNG per image)."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli


@pytest.mark.parametrize("argv,message", [
    (["--loss", "hinge"], "--loss 'hinge'"),
    (["--class-weights", "1,x,1,1"], "--class-weights"),
    (["--class-weights", "-1,1,1,1"], "--class-weights"),
    (["--class-weights", "1,1"], "--class-weights: 2 weight(s) for 4 classes"),
    (["--arch", "lenet5", "--loss", "dice"], "Dice is a segmentation loss"),
])
def test_bad_loss_and_class_weights_are_one_line_errors(argv, message, tmp_path, capsys):
    base = ["train", "--data", "shapes:8", "--epochs", "1", "--img-size", "32", "--out", str(tmp_path), "--quiet"]
    if "--arch" not in argv:
        base += ["--arch", "unet", "--model-arg", "base_filters=2", "--model-arg", "depth=1"]
    code, out, err = run_cli(base + argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir()), "nothing written"


def test_loss_and_auto_class_weights_are_recorded(tmp_path, capsys):
    code, out, err = run_cli(["train", "--arch", "unet", "--data", "shapes:16", "--epochs", "1", "--img-size", "32",
                              "--batch-size", "8", "--model-arg", "base_filters=2", "--model-arg", "depth=1",
                              "--loss", "ce+dice", "--class-weights", "auto", "--out", str(tmp_path),
                              "--name", "w", "--quiet"], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["loss"] == "ce+dice" and cfg["class_weights"] == "auto"
    weights = cfg["class_weight_values"]
    assert len(weights) == 4 and weights[0] < 1 < min(weights[1:])  # background is 80 % of pixels


def test_eval_writes_masks_overlays_and_crf_report(unet_run, capsys):
    pytest.importorskip("pydensecrf.densecrf")
    code, out, err = run_cli(["eval", str(unet_run)], capsys)
    assert code == 0, err
    plain = json.loads((unet_run / "eval.json").read_text())
    num = plain["num_images"]
    masks = sorted((unet_run / "eval").glob("*_mask.png"))
    assert len(masks) == num and len(list((unet_run / "eval").glob("*_overlay.png"))) == num
    assert np.asarray(Image.open(masks[0])).max() < 4  # pixel = class index

    code, out, err = run_cli(["eval", str(unet_run), "--crf"], capsys)
    assert code == 0, err
    refined = json.loads((unet_run / "eval_crf.json").read_text())
    assert refined["crf"] is True and {"val_miou", "val_pixel_accuracy", "per_class_iou"} <= set(refined)
    assert (unet_run / "confusion_crf.png").is_file() and len(list((unet_run / "eval_crf").glob("*_mask.png"))) == num
    assert "eval_crf.json" in out and "val_miou" in out
