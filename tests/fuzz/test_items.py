"""The failures of issue 17, one test each (item 9, the --epochs hang, is tests/data's)."""

from __future__ import annotations

import errno
import io
import json

import numpy as np
import pytest
from PIL import Image

from kcv import runs
from tests.conftest import write_classification_folders, write_segmentation_folders
from tests.fuzz.conftest import assert_no_untrained_runs, assert_promise, kcv, save_png, tiny_rgb

TRAIN = ["train", "--epochs", "1", "--img-size", "32", "--batch-size", "4", "--quiet"]


def _train(capsys, tmp_path, *args, arch="lenet5"):
    code, out, err = kcv(TRAIN + ["--arch", arch, "--out", tmp_path / "runs", *args], capsys)
    assert_no_untrained_runs(tmp_path / "runs")
    return code, out, err


def test_item01_truncated_jpeg_named_before_training(tmp_path, capsys):
    data = write_classification_folders(tmp_path / "data", n=3, size=32)
    bad = data / "train" / "circle" / "photo.jpg"
    buf = io.BytesIO()
    Image.fromarray(tiny_rgb(64, 64)).save(buf, "JPEG", quality=90)
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # PIL's verify() passes this
    code, _, err = _train(capsys, tmp_path, "--data", data)
    assert code == 2 and "truncated" in assert_promise(code, err, [bad])


def test_item02_one_image_per_class_flat_layout(tmp_path, capsys):
    for name in ("a", "b"):
        save_png(tmp_path / "data" / name / "x.png", tiny_rgb())
    code, _, err = _train(capsys, tmp_path, "--data", tmp_path / "data")
    assert code == 2 and "validation split empty" in assert_promise(code, err, [tmp_path / "data"])


def test_item03_classes_txt_not_utf8(tmp_path, capsys):
    data = write_segmentation_folders(tmp_path / "data", n=3, size=32)
    (data / "classes.txt").write_bytes("fond\nc\xf4t\xe9\n".encode("latin-1"))
    code, _, err = _train(capsys, tmp_path, "--data", data, arch="unet")
    assert code == 2 and "UTF-8" in assert_promise(code, err, [data / "classes.txt"])


@pytest.mark.parametrize("args, flag", [(["--arch", "lenet5", "--img-size", "20000"], "--img-size"),
                                        (["--arch", "unet", "--model-arg", "base_filters=1000000000"],
                                         "base_filters")])
def test_item04_sizes_that_cannot_fit_are_refused_saying_what_fits(args, flag, tmp_path, capsys):
    code, _, err = kcv(["train", "--out", tmp_path / "runs", "--quiet", *args], capsys, seconds=60)
    line = assert_promise(code, err, [flag])
    assert code == 2 and "would fit" in line and "memory" in line
    assert not (tmp_path / "runs").exists()


def test_item04_level_below_one_pixel_is_refused():
    from kcv.errors import KcvError
    from kcv.models.feasibility import check_feasible

    # resnet18's stride-2 stages on a 16 px input reach 1 px before the last one halves it
    with pytest.raises(KcvError, match="smaller than 1 px"):
        check_feasible("resnet18", 2, 16, 2, {})
    check_feasible("resnet18", 2, 32, 2, {})  # its smallest size is fine


@pytest.mark.parametrize("value", ["abc", "4.5", "true", "[4]"])
def test_item05_model_args_checked_against_the_builders_types(value, tmp_path, capsys):
    code, _, err = _train(capsys, tmp_path, "--model-arg", f"base_filters={value}", arch="unet")
    assert code == 2 and "an integer" in assert_promise(code, err, ["--model-arg base_filters"])


def test_item05_float_and_bool_hyperparameters():
    from kcv.errors import KcvError
    from kcv.registry import typed_hyperparameter

    assert typed_hyperparameter("dropout", 1, 0.5) == 1.0 and typed_hyperparameter("dropout", "1e-3", 0.5) == 1e-3
    for bad, default in (("x", 0.5), (float("nan"), 0.5), (1, True), (3, "transpose"), (2, ())):
        with pytest.raises(KcvError, match="--model-arg"):
            typed_hyperparameter("p", bad, default)


def test_item06_out_is_a_file(tmp_path, capsys, cls_run, unet_run):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    code, _, err = kcv(["train", "--arch", "lenet5", "--data", "shapes:4", "--epochs", "1", "--img-size", "32",
                        "--out", blocker, "--quiet"], capsys)
    assert code == 2 and "is a file" in assert_promise(code, err, ["--out"])
    image = save_png(tmp_path / "img.png", tiny_rgb(32, 32))
    code, _, err = kcv(["predict", unet_run, image, "--out", blocker], capsys)
    assert code == 2 and "is a file" in assert_promise(code, err, ["--out"])
    code, _, err = kcv(["explain", cls_run, image, "--out", blocker], capsys)
    assert code == 2 and "is a file" in assert_promise(code, err, ["--out"])


@pytest.mark.parametrize("config", ["[1, 2]", '{"arch": "lenet5", "img_size": "big", "task": "classification", '
                                              '"class_names": ["a", "b"]}'])
def test_item07_damaged_config_json_on_resume(config, tmp_path, capsys, cls_run):
    import shutil

    run = shutil.copytree(cls_run, tmp_path / "run")
    (run / "config.json").write_text(config)
    code, _, err = kcv(["train", "--resume", run], capsys)
    assert code == 2 and "damaged run config" in assert_promise(code, err, [run / "config.json"])


def _disk_full_on(monkeypatch, nth):
    """Make the ``nth`` atomic write (1-based) of the process fail as a full disk would."""
    real, calls = runs.atomic_path, []

    import contextlib

    @contextlib.contextmanager
    def failing(path, suffix=None):
        calls.append(path)
        n = len(calls)
        with real(path, suffix) as tmp:
            yield tmp
            if n == nth:  # the file's last bytes do not fit: before the rename
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(runs, "atomic_path", failing)
    return calls


def test_item08_disk_full_keeps_the_run_resumable(tmp_path, capsys, monkeypatch):
    # Writes of a 2-epoch run: config.json, epoch 1 (last.keras, model.keras, history.csv),
    # epoch 2 (last.keras, ...). Fail the 5th: epoch 2's last.keras.
    _disk_full_on(monkeypatch, 5)
    argv = ["train", "--arch", "lenet5", "--data", "shapes:8", "--epochs", "2", "--img-size", "32",
            "--batch-size", "4", "--out", tmp_path / "runs", "--quiet"]
    code, _, err = kcv(argv, capsys)
    line = assert_promise(code, err, ["cannot save epoch 2"])
    run = tmp_path / "runs" / "lenet5"
    assert code == 2 and "--resume" in line and "epoch 1" in line
    from kcv.train.callbacks import read_state

    assert read_state(run / "last.keras")["epoch"] == 1 and not list(run.glob(".*tmp*"))
    monkeypatch.undo()
    code, out, err = kcv(["train", "--resume", run, "--quiet"], capsys)
    assert code == 0, err
    assert read_state(run / "last.keras")["epoch"] == 2


def test_item08_disk_full_in_the_first_epoch_leaves_no_run(tmp_path, capsys, monkeypatch):
    _disk_full_on(monkeypatch, 2)  # config.json written, epoch 1's first file fails
    code, _, err = _train(capsys, tmp_path, "--data", "shapes:4")
    assert code == 2 and "no epoch was saved" in assert_promise(code, err, ["cannot save epoch 1"])
    assert not any((tmp_path / "runs").iterdir())


def test_item08_disk_full_anywhere_else_is_one_line(tmp_path, capsys, cls_run, monkeypatch):
    _disk_full_on(monkeypatch, 1)
    code, _, err = kcv(["eval", cls_run], capsys)
    assert code == 2 and "no space left" in assert_promise(code, err, [cls_run])


def _segmentation_with_mask(root, mask, classes_txt=False):
    write_segmentation_folders(root, n=3, size=32, classes_txt=classes_txt)
    for p in root.glob("*/masks/*.png"):
        Image.fromarray(mask).save(p)
    return root


def test_item10_16bit_mask_values_do_not_wrap(tmp_path, capsys):
    mask = np.zeros((32, 32), np.uint16)
    mask[:8] = 1
    mask[8:16] = 257  # was read as class 1
    data = _segmentation_with_mask(tmp_path / "data", mask)
    code, _, err = _train(capsys, tmp_path, "--data", data, arch="unet")
    assert code == 2 and "mask value 257" in assert_promise(code, err, ["masks"])


@pytest.mark.parametrize("classes_txt", [True, False])
def test_item11_all_ignore_masks_are_refused(classes_txt, tmp_path, capsys):
    data = _segmentation_with_mask(tmp_path / "data", np.full((32, 32), 255, np.uint8), classes_txt)
    code, _, err = _train(capsys, tmp_path, "--data", data, arch="unet")
    assert code == 2 and "every mask pixel is 255" in assert_promise(code, err, [data / "train" / "masks"])


def test_item12_sparse_class_indices_warn(tmp_path, capsys):
    from kcv.data import folders

    mask = np.zeros((32, 32), np.uint8)
    mask[:10] = 1
    data = _segmentation_with_mask(tmp_path / "data", mask)
    first = next((data / "train" / "masks").glob("*.png"))
    mask[0, 0] = 200  # one stray value: a 201-class model
    Image.fromarray(mask).save(first)
    found = folders.load_segmentation(data)
    err = capsys.readouterr().err
    assert len(found.class_names) == 201
    assert err.startswith("warning: ") and "only 3 of the 201 class indices" in err and str(data) in err


def test_item13_classifier_on_a_segmentation_folder(tmp_path, capsys):
    data = write_segmentation_folders(tmp_path / "data", n=3, size=32)
    code, _, err = _train(capsys, tmp_path, "--data", data)
    assert code == 2 and "segmentation data set" in assert_promise(code, err, [data])


def test_item14_no_run_directory_when_nothing_was_trained(tmp_path, capsys):
    # (a full disk in epoch 1 is test_item08_disk_full_in_the_first_epoch_leaves_no_run)
    code, _, err = _train(capsys, tmp_path, "--data", "shapes:8", "--lr", "inf")
    assert code == 2 and "finite" in assert_promise(code, err, ["--lr"])
    from kcv.errors import KcvError
    from kcv.train import TrainConfig, train

    with pytest.raises(KcvError, match="--lr inf"):
        train(TrainConfig(arch="lenet5", data="shapes:4", lr=float("inf"), out=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_item15_divergence_message_only_promises_a_saved_epoch(tmp_path):
    from kcv.errors import KcvError
    from kcv.train.callbacks import NanGuard

    guard = NanGuard("lower --lr (was 1e+30)", tmp_path)
    guard.on_epoch_begin(0)
    with pytest.raises(KcvError) as first:
        guard.on_batch_end(0, {"loss": float("nan")})
    assert "keeps the last good epoch" not in str(first.value) and "--lr" in str(first.value)
    guard.on_epoch_begin(3)
    with pytest.raises(KcvError, match="keeps the last good epoch"):
        guard.on_batch_end(0, {"loss": float("inf")})


def test_item16_truncated_last_keras_is_called_damaged(tmp_path, capsys, cls_run):
    import shutil

    run = shutil.copytree(cls_run, tmp_path / "run")
    data = (run / "last.keras").read_bytes()
    (run / "last.keras").write_bytes(data[: len(data) // 2])
    code, _, err = kcv(["train", "--resume", run, "--epochs", "2"], capsys)
    assert code == 2 and "damaged" in assert_promise(code, err, [run / "last.keras"])


def test_item17_export_removes_what_a_killed_export_left(tmp_path, capsys, cls_run):
    import os
    import shutil

    run = shutil.copytree(cls_run, tmp_path / "run")
    exports = run / "exports"
    exports.mkdir(exist_ok=True)  # the shared run may have been exported by an earlier case
    dead = 2**22 + 12345  # above Linux's pid_max: no such process
    stale = [exports / f".model_fp32.tmp-{dead}-abc.tmp.tflite", exports / f".saved_model.tmp-{dead}-x.tmp"]
    stale[0].write_bytes(b"half")
    (stale[1] / "variables").mkdir(parents=True)
    live = exports / f".model.tmp-{os.getppid()}-y.tmp.onnx"  # a concurrent export's: kept
    live.write_bytes(b"busy")
    code, _, err = kcv(["export", run, "--tflite"], capsys)
    assert code == 0, err
    assert not any(p.exists() for p in stale) and live.exists()


def _exif_jpeg(path, pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=100, exif=exif.tobytes())


def test_item18_exif_orientation_applied_in_training_and_predict(tmp_path):
    from kcv.data import folders
    from kcv.data.pipeline import decode_image
    from kcv.runtime.predict import load_image

    data = write_segmentation_folders(tmp_path / "data", n=3, size=32)
    stored = np.kron(tiny_rgb(4, 6), np.ones((8, 8, 1), np.uint8))  # 32 high, 48 wide as stored
    shown = np.rot90(stored, -1)  # orientation 6: the viewer turns it 90° clockwise
    for img in data.glob("*/images/*.jpg"):
        _exif_jpeg(img, stored, 6)
        Image.fromarray(np.zeros(shown.shape[:2], np.uint8)).save(img.parent.parent / "masks" / f"{img.stem}.png")
    found = folders.load_segmentation(data)  # was: "mask size 32x48 differs from image size 48x32"
    assert len(found.train) == 2
    trained = decode_image(str(img), 48).numpy().astype(int)
    predicted = load_image(img, 48)[0].astype(int)
    expected = np.asarray(Image.fromarray(shown).resize((48, 48), Image.BILINEAR)).astype(int)
    wrong = np.asarray(Image.fromarray(stored).resize((48, 48), Image.BILINEAR)).astype(int)
    for got in (trained, predicted):
        assert np.abs(got - expected).mean() < 8 < np.abs(got - wrong).mean()


def test_item19_img_size_with_a_fixed_size_model_file(tmp_path, capsys):
    import keras
    import tensorflow as tf

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    path = tmp_path / "fixed.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    image = save_png(tmp_path / "a.png", tiny_rgb(32, 32))
    code, _, err = kcv(["predict", path, image, "--img-size", "64"], capsys)
    assert code == 2 and "fixed 32x32" in assert_promise(code, err, ["--img-size"])
    code, out, err = kcv(["predict", path, image, "--img-size", "32"], capsys)
    assert code == 0 and json.loads(out.splitlines()[-1])["file"] == str(image)


def test_item14_a_run_killed_before_its_first_epoch(tmp_path, capsys, monkeypatch):
    """A real ``kcv train`` killed with SIGKILL once its ``config.json`` appears (no clean-up
    can run) leaves a directory that no reader picks and the next run of the name takes over."""
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.chdir(tmp_path)  # a bare `kcv predict` reads ./saved_models
    root = tmp_path / "saved_models"
    code, _, err = _train(capsys, tmp_path, "--data", "shapes:4", "--out", root, "--name", "good")
    assert code == 0, err
    victim = root / "victim"
    proc = subprocess.Popen([sys.executable, "-m", "kcv", "train", "--arch", "lenet5", "--data", "shapes:64",
                             "--epochs", "1", "--img-size", "32", "--batch-size", "4", "--out", str(root),
                             "--name", "victim", "--quiet"],
                            env={**os.environ, "PYTHONPATH": _repo_root()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (victim / "config.json").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no config.json within 180 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (victim / "last.keras").exists(), "killed too late: the first epoch was already saved"
    assert any(p.name.startswith(".writer.tmp-") for p in victim.iterdir())  # the dead writer's mark
    assert runs.latest_run(root) == root / "good" and runs.abandoned(victim)
    img = save_png(tmp_path / "a.png", tiny_rgb(32, 32))
    code, out, err = kcv(["predict", img], capsys)  # the newest run: "good", not the killed one
    assert_promise(code, err, ok=(0,))
    assert err.startswith("saved_models/good/") and len(out.splitlines()) == 1, err
    code, _, err = kcv(["train", "--resume", victim], capsys)
    assert code == 2 and "nothing was trained" in assert_promise(code, err, ["--resume", victim])
    code, _, err = _train(capsys, tmp_path, "--data", "shapes:4", "--out", root, "--name", "victim")
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir()) == ["good", "victim"]  # the name taken over, no victim-2
    assert (victim / "last.keras").is_file() and not any(p.name.startswith(".") for p in victim.iterdir())


def _repo_root():
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])
