"""``kcv eval``: classification and segmentation reports, confusion-matrix PNG, eval.json."""

import json

import numpy as np

from kcv.evaluation.evaluate import classification_report
from tests.conftest import run_cli, write_classification_folders


def test_classification_report_maths():
    logits = np.array([[5, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5]], np.float32)
    labels = np.array([0, 1, 2, 2])
    report, cm = classification_report(logits, labels, ["a", "b", "c"])
    assert report["val_accuracy"] == 0.75 and report["val_top5_accuracy"] == 1.0
    assert report["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    assert report["per_class"]["c"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_eval_segmentation_run(unet_run, capsys):
    code, out, err = run_cli(["eval", str(unet_run)], capsys)
    assert code == 0, err
    report = json.loads((unet_run / "eval.json").read_text())
    assert {"val_miou", "val_pixel_accuracy", "per_class_iou", "val_loss"} <= set(report)
    metrics = json.loads((unet_run / "metrics.json").read_text())
    assert abs(report["val_miou"] - metrics["val_miou"]) < 1e-6, "eval reproduces metrics.json"
    assert (unet_run / "confusion.png").stat().st_size > 1000 and "val_miou" in out


def test_eval_classification_on_folders(tmp_path, capsys):
    data = write_classification_folders(tmp_path / "data")
    code, _, err = run_cli(["train", "--arch", "lenet5", "--data", str(data), "--epochs", "1",
                            "--out", str(tmp_path / "runs"), "--name", "cls", "--quiet"], capsys)
    assert code == 0, err
    run = tmp_path / "runs" / "cls"
    code, out, err = run_cli(["eval", str(run), "--data", str(data)], capsys)
    assert code == 0, err
    report = json.loads((run / "eval.json").read_text())
    assert {"val_accuracy", "val_top5_accuracy", "val_loss", "per_class", "confusion_matrix"} <= set(report)
    assert set(report["per_class"]) == {"circle", "square", "triangle"}
    assert sum(sum(r) for r in report["confusion_matrix"]) == report["num_images"]
    assert "precision" in out and (run / "confusion.png").is_file()
    # the wrong data (segmentation masks, 4 classes) is one line, exit 2
    code, _, err = run_cli(["eval", str(run), "--data", "shapes:8"], capsys)
    assert code == 0  # shapes classification: same 3 classes
    code, _, err = run_cli(["eval", str(tmp_path / "missing")], capsys)
    assert code == 2 and err.count("\n") == 1
