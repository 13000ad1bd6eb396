"""The run directory contract of docs/design.md §4, written by the training loop."""

import csv
import json
import subprocess
import sys

import numpy as np

from kcv.train import TrainConfig, train
from tests.conftest import run_cli, write_classification_folders


def test_run_directory_is_complete(unet_run):
    for f in ("config.json", "model.keras", "last.keras", "history.csv", "metrics.json", "curves.png"):
        assert (unet_run / f).is_file() and (unet_run / f).stat().st_size > 0, f
    cfg = json.loads((unet_run / "config.json").read_text())
    assert cfg["arch"] == "unet" and cfg["task"] == "segmentation" and cfg["num_classes"] == 4
    assert cfg["class_names"][0] == "background" and cfg["model_args"] == {"base_filters": 4, "depth": 2}
    assert {"kcv", "tensorflow", "keras"} <= set(cfg["versions"])
    m = json.loads((unet_run / "metrics.json").read_text())
    assert {"val_miou", "val_pixel_accuracy", "per_class_iou", "val_loss"} <= set(m)
    assert set(m["per_class_iou"]) == set(cfg["class_names"])
    rows = list(csv.DictReader((unet_run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["images_per_sec"]) > 0 and "val_miou" in rows[0]


def test_model_loads_in_a_fresh_process(unet_run):
    code = ("import kcv, keras, numpy as np; "
            f"m = keras.saving.load_model(r'{unet_run / 'model.keras'}'); "
            "print(m(np.zeros((1, 32, 32, 3), 'float32')).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(1, 32, 32, 4)" in out.stdout


def test_same_seed_same_history(tmp_path):
    kw = dict(arch="unet", data="shapes:16", epochs=1, img_size=32, batch_size=8, verbose=0,
              model_args={"base_filters": 2, "depth": 1}, out=str(tmp_path))
    a, b = train(TrainConfig(**kw)), train(TrainConfig(**kw))
    assert a.name == "unet" and b.name == "unet-2"  # never overwritten
    la = [float(r["loss"]) for r in csv.DictReader((a / "history.csv").open())]
    lb = [float(r["loss"]) for r in csv.DictReader((b / "history.csv").open())]
    np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_cli_trains_a_classifier_on_folders_with_model_args(tmp_path, capsys):
    data = write_classification_folders(tmp_path / "data")
    code, out, err = run_cli(["train", "--arch", "lenet5", "--data", str(data), "--epochs", "1",
                              "--out", str(tmp_path / "runs"), "--name", "lenet", "--quiet"], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "runs" / "lenet" / "metrics.json").read_text())
    assert {"val_accuracy", "val_top5_accuracy", "val_loss"} <= set(m)
    assert "saved" in out and "val_accuracy" in out


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    for argv, needle in ((["--epochs", "0"], "--epochs 0"), (["--img-size", "8"], "--img-size 8"),
                         (["--model-arg", "base_filters"], "--model-arg"),
                         (["--model-arg", "nope=1"], "unknown hyperparameter")):
        code, _, err = run_cli(["train", "--arch", "unet", "--out", str(tmp_path)] + argv, capsys)
        assert code == 2 and err.startswith("error:") and needle in err and err.count("\n") == 1, err
