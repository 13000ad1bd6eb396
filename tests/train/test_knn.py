"""``kcv train --arch knn [--backbone RUN]``: a full run directory without gradient descent."""

from __future__ import annotations

import csv
import json

import pytest

from kcv.runs import load_run
from kcv.train import TrainConfig, train
from tests.conftest import run_cli, write_classification_folders

RUN_FILES = {"config.json", "model.keras", "last.keras", "history.csv", "metrics.json", "curves.png"}


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """A LeNet-5 trained one epoch at 32 px: the backbone whose features k-NN compares."""
    root = tmp_path_factory.mktemp("backbone")
    return train(TrainConfig(arch="lenet5", data="shapes:48", epochs=1, batch_size=16,
                             out=str(root), verbose=0))


def test_pixels_on_shapes_write_a_complete_run_that_exports(tmp_path, capsys):
    code, out, err = run_cli(["train", "--arch", "knn", "--data", "shapes:40", "--out", str(tmp_path),
                              "--name", "k", "--model-arg", "k=3", "--quiet"], capsys)
    assert code == 0, err
    run = tmp_path / "k"
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    m = json.loads((run / "metrics.json").read_text())
    assert 0 <= m["val_accuracy"] <= 1 and m["val_top5_accuracy"] == 1.0  # 3 classes
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 1 and float(rows[0]["val_accuracy"]) == pytest.approx(m["val_accuracy"])
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["arch"] == "knn" and cfg["model_args"] == {"k": 3} and cfg["backbone"] is None
    code, out, err = run_cli(["export", str(run), "--tflite"], capsys)
    assert code == 0, err
    report = json.loads((run / "exports" / "report.json").read_text())
    assert report["formats"]["tflite"]["status"] == "ok"


def test_cosine_on_class_folders(tmp_path, capsys):
    data = write_classification_folders(tmp_path / "data")
    code, out, err = run_cli(["train", "--arch", "knn", "--data", str(data), "--out", str(tmp_path / "runs"),
                              "--name", "k", "--model-arg", "k=1", "--model-arg", "metric=cosine",
                              "--quiet"], capsys)
    assert code == 0, err
    assert "val_accuracy" in out
    cfg = json.loads((tmp_path / "runs" / "k" / "config.json").read_text())
    assert cfg["num_train"] == 12 and cfg["model_args"]["metric"] == "cosine"


def test_backbone_features(lenet_run, tmp_path):
    run = train(TrainConfig(arch="knn", data="shapes:40", backbone=str(lenet_run),
                            out=str(tmp_path), verbose=0))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backbone_arch"] == "lenet5" and cfg["img_size"] == 32
    # The reference set holds F6's 84 features per training image.
    model, _ = load_run(run)
    assert tuple(model.get_layer("logits").references.shape) == (40, 84)
    assert model.get_layer("lenet5_features").get_layer("lenet5_f6") is not None
    assert "val_accuracy" in json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("argv,needle", [
    (["--arch", "lenet5", "--backbone", "RUN"], "--backbone is for --arch knn only"),
    (["--arch", "knn", "--backbone", "no/such/run"], "no/such/run: no such run directory"),
    (["--arch", "knn", "--model-arg", "k=0"], "--model-arg k=0"),
    (["--arch", "knn", "--model-arg", "k=500"], "--model-arg k=500"),
    (["--arch", "knn", "--model-arg", "metric=manhattan"], "metric='manhattan'"),
    (["--arch", "knn", "--model-arg", "reference_size=3"], "--model-arg reference_size"),
])
def test_bad_flags_are_one_line_errors_and_write_nothing(argv, needle, tmp_path, capsys):
    code, out, err = run_cli(["train", *argv, "--data", "shapes:20", "--out", str(tmp_path / "runs"),
                              "--quiet"], capsys)
    assert code == 2 and needle in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_img_size_must_match_the_backbone(lenet_run, tmp_path, capsys):
    code, out, err = run_cli(["train", "--arch", "knn", "--backbone", str(lenet_run), "--img-size", "48",
                              "--data", "shapes:20", "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2 and "--img-size 48" in err and "32 px" in err
