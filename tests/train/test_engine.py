"""Training options: precision, XLA, optimizers and schedules, soft labels, NaN guard,
early stopping, TensorBoard, and one-line errors for bad flags."""

import csv
import json
import math

import keras
import numpy as np
import pytest

from kcv.models import inference_model
from kcv.train import TrainConfig, train
from kcv.train.callbacks import read_state
from tests.conftest import run_cli

SEG = dict(arch="unet", data="shapes:24", img_size=32, batch_size=8, epochs=2, verbose=0,
           model_args={"base_filters": 4, "depth": 2})
MINI = {**SEG, "data": "shapes:16", "epochs": 1, "model_args": {"base_filters": 4, "depth": 1}}
CLS = dict(arch="lenet5", data="shapes:48", img_size=32, batch_size=16, epochs=2, verbose=0)


def history(run):
    return list(csv.DictReader((run / "history.csv").open()))


def finite_losses(run):
    rows = history(run)
    return rows and all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["val_loss"])) for r in rows)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_without_nan_and_saves_float32(precision, tmp_path):
    run = train(TrainConfig(**MINI, precision=precision, out=str(tmp_path)))
    assert finite_losses(run)
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored"
    trained = keras.saving.load_model(run / "last.keras", compile=False)
    assert trained.outputs[0].dtype == "float32", "logits stay float32 in mixed precision"
    assert precision in {layer.dtype_policy.name for layer in trained.layers}
    model = keras.saving.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    probs = inference_model(model)(np.zeros((1, 32, 32, 3), "float32"))
    assert probs.dtype == "float32" and np.allclose(np.sum(probs, -1), 1, atol=1e-5)
    m = json.loads((run / "metrics.json").read_text())
    assert 0 <= m["val_miou"] <= 1 and math.isfinite(m["val_loss"])


def test_mirrored_strategy_trains_on_the_local_devices(tmp_path):
    run = train(TrainConfig(**MINI, distribute="mirrored", out=str(tmp_path)))
    assert finite_losses(run)
    assert json.loads((run / "config.json").read_text())["replicas"] >= 1


def test_xla_and_steps_per_execution_train_without_nan(tmp_path):
    run = train(TrainConfig(**MINI, jit=True, steps_per_execution=2, out=str(tmp_path)))
    assert finite_losses(run)


def test_sgd_cosine_warmup_cutmix_and_label_smoothing_keep_metric_names(tmp_path):
    run = train(TrainConfig(**CLS, optimizer="sgd", lr=0.05, schedule="cosine", warmup_epochs=0.5,
                            label_smoothing=0.1, augment="flip,crop=0.8,cutmix,mixup", out=str(tmp_path)))
    rows = history(run)
    assert {"accuracy", "top5_accuracy", "val_accuracy", "loss", "val_loss"} <= set(rows[0])
    assert finite_losses(run)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["augment"] == "flip,crop=0.8,cutmix=1,mixup=0.2" and cfg["schedule"] == "cosine"


def test_adamw_with_weight_decay_trains(tmp_path):
    run = train(TrainConfig(**CLS, optimizer="adamw", weight_decay=1e-3, augment="none", out=str(tmp_path)))
    assert finite_losses(run)
    assert json.loads((run / "config.json").read_text())["weight_decay"] == 1e-3


def test_patience_stops_early(tmp_path):
    run = train(TrainConfig(**{**CLS, "epochs": 6}, lr=1e-12, patience=1, out=str(tmp_path)))
    m = json.loads((run / "metrics.json").read_text())
    assert m["stopped_early"] and m["epochs"] == 2 and m["best_epoch"] == 1


def test_tensorboard_logs_or_a_clear_error(tmp_path, capsys):
    import importlib.util

    argv = ["train", "--arch", "lenet5", "--data", "shapes:16", "--img-size", "32", "--epochs", "1",
            "--tensorboard", "--out", str(tmp_path), "--name", "tb", "--quiet"]
    code, _, err = run_cli(argv, capsys)
    if importlib.util.find_spec("tensorboard") is None:
        assert code == 2 and "pip install tensorboard" in err and err.count("\n") == 1
    else:
        assert code == 0, err
        assert any((tmp_path / "tb" / "tensorboard").rglob("events.out.tfevents.*"))


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_epoch(tmp_path, capsys):
    code, _, err = run_cli(["train", "--arch", "unet", "--data", "shapes:16", "--img-size", "32",
                            "--epochs", "3", "--optimizer", "sgd", "--lr", "1e30", "--augment", "none",
                            "--model-arg", "depth=1", "--out", str(tmp_path), "--name", "nan", "--quiet"], capsys)
    assert code == 2 and err.startswith("error: training diverged: loss is nan") and err.count("\n") == 1, err
    assert "--lr" in err
    run = tmp_path / "nan"
    assert not (run / "metrics.json").exists()
    rows = history(run)  # only finite epochs were recorded, and last.keras is one of them
    assert rows and all(math.isfinite(float(r["loss"])) for r in rows)
    assert read_state(run / "last.keras")["epoch"] == len(rows)


@pytest.mark.parametrize("argv,needle", [
    (["--precision", "float8"], "--precision 'float8'"),
    (["--distribute", "tpu"], "--distribute 'tpu'"),
    (["--optimizer", "lamb"], "--optimizer 'lamb'"),
    (["--schedule", "step"], "--schedule 'step'"),
    (["--label-smoothing", "0.1"], "classification only"),
    (["--augment", "mixup"], "classification only"),
    (["--warmup-epochs", "50"], "--warmup-epochs 50"),
    (["--steps-per-execution", "0"], "--steps-per-execution 0"),
    (["--patience", "0"], "--patience 0"),
    (["--distribute", "multiworker"], "TF_CONFIG"),
])
def test_bad_engine_flags_are_one_line_errors(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code, _, err = run_cli(["train", "--arch", "unet", "--out", str(tmp_path)] + argv, capsys)
    assert code == 2 and err.startswith("error:") and needle in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())
