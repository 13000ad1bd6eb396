"""Crash safety: a run killed with SIGKILL and resumed lists every epoch exactly once."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kcv.train import TrainConfig, train
from kcv.train.callbacks import read_state
from tests.conftest import run_cli

TINY = ["--arch", "unet", "--data", "shapes:32", "--img-size", "32", "--batch-size", "8",
        "--model-arg", "base_filters=4", "--model-arg", "depth=2", "--augment", "flip,rotate=20"]


def epochs_of(run):
    return [int(r["epoch"]) for r in csv.DictReader((run / "history.csv").open())]


def losses_of(run):
    return [float(r["loss"]) for r in csv.DictReader((run / "history.csv").open())]


@pytest.mark.slow
def test_sigkill_then_resume_lists_each_epoch_once(tmp_path, capsys):
    epochs = 5
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "kcv", "train", *TINY, "--epochs", str(epochs),
           "--out", str(tmp_path), "--name", "run", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = tmp_path / "run"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            state = read_state(run / "last.keras")
            if state and state["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-500:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done = read_state(run / "last.keras")["epoch"]
    assert 2 <= done < epochs and not (run / "metrics.json").exists()

    code, out, err = run_cli(["train", "--resume", str(run), "--quiet"], capsys)
    assert code == 0, err
    assert epochs_of(run) == list(range(1, epochs + 1))
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs"] == epochs and m["resumed_at_epoch"] == done and 0 < m["val_miou"] <= 1
    assert not list(run.glob(".*tmp*")), "no temporary files left behind"

    # the resumed run replays exactly the batches an uninterrupted run sees
    ref = train(TrainConfig(arch="unet", data="shapes:32", img_size=32, batch_size=8, epochs=epochs,
                            model_args={"base_filters": 4, "depth": 2}, augment="flip,rotate=20",
                            out=str(tmp_path), name="ref", verbose=0))
    np.testing.assert_allclose(losses_of(run), losses_of(ref), rtol=2e-3)


def test_resume_extends_a_finished_run(unet_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(unet_run, run)
    code, _, err = run_cli(["train", "--resume", str(run)], capsys)
    assert code == 2 and "--epochs" in err and err.count("\n") == 1
    code, _, err = run_cli(["train", "--resume", str(run), "--epochs", "3", "--quiet"], capsys)
    assert code == 0, err
    assert epochs_of(run) == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["epochs"] == 3


def test_resume_refuses_config_changes_and_missing_runs(unet_run, tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", str(unet_run), "--lr", "0.1"], capsys)
    assert code == 2 and "--lr" in err and err.count("\n") == 1
    code, _, err = run_cli(["train", "--resume", str(tmp_path / "nope")], capsys)
    assert code == 2 and "no such run" in err
