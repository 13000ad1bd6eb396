"""Knowledge distillation: the Keras distiller computes kcv's formula, the teacher never
changes, only the student is saved and exported, unlabeled images and segmentation."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

from kcv import losses, options, runs
from kcv.data.pipeline import load_data
from kcv.data.unlabeled import load_unlabeled, with_unlabeled
from kcv.train import TrainConfig, distill
from tests.train.learn_fixtures import cli, exports_ok, learn_cnn, seg_teacher_run, teacher_run, tiny  # noqa: F401

# one xdist worker for the learn tests: they share the teacher runs of learn_fixtures
pytestmark = pytest.mark.xdist_group("learn")


def _tiny_net(seed, name):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name=f"{name}_conv")(inputs)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name=name)


def test_distiller_loss_is_the_formula():
    """keras.distillation.Distiller + SoftTargetKL + a loss that skips label 255 computes
    α·CE + (1−α)·T²·KL exactly as kcv.losses.distillation does."""
    teacher, student = _tiny_net(0, "teacher"), _tiny_net(1, "student")
    d = distill.make_distiller(teacher, student, temperature=3.0, alpha=0.25)
    d.compile(optimizer="sgd", loss=losses.KcvLoss("ce"))
    x = np.random.default_rng(0).normal(size=(6, 4, 4, 3)).astype("float32")
    y = np.array([0, 1, 2, 255, 255, 1], "int32")  # two unlabeled samples
    got = d.compute_loss(x, y, student(x, training=False), training=False)
    want = losses.distillation(y, student(x, training=False), teacher(x, training=False), 3.0, 0.25)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_teacher_frozen_and_in_inference_mode():
    teacher, student = _tiny_net(0, "teacher"), _tiny_net(1, "student")
    before = [np.array(w) for w in teacher.weights]  # BN moving statistics included
    d = distill.make_distiller(teacher, student, temperature=2.0, alpha=0.5)
    d.compile(optimizer=keras.optimizers.SGD(0.5), loss=losses.KcvLoss("ce"), run_eagerly=True)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(8, 4, 4, 3)).astype("float32")
    s0 = [np.array(w) for w in student.weights]
    d.fit(x, np.arange(8) % 3, epochs=2, batch_size=4, verbose=0)
    for a, b in zip(before, teacher.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(s0, student.weights))


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_distilled_student_with_unlabeled_images(tmp_path, teacher_run):
    """kcv train --teacher --unlabeled: the teacher's file is untouched, the run's
    model.keras is the (smaller) student alone, and it exports like any other run."""
    teacher_file = teacher_run / "model.keras"
    digest = _digest(teacher_file)
    with learn_cnn() as arch:
        code, out, err = cli(["train", "--arch", arch, "--data", "shapes:64", "--img-size", 32,
                              "--epochs", 1, "--batch-size", 32, "--augment", "none", "--model-arg", "width=4",
                              "--teacher", teacher_run, "--temperature", 2, "--alpha", 0.7,
                              "--unlabeled", "shapes:32", "--baseline", teacher_run, "--out", tmp_path,
                              "--name", "student", "--quiet"])
        assert code == 0, err
        run = tmp_path / "student"
        student, config = runs.load_run(run)
    assert _digest(teacher_file) == digest
    assert student.name == "cnn"
    assert config["params"] == student.count_params() < config["distillation"]["teacher_params"]
    assert config["distillation"] == {"teacher": str(teacher_run), "temperature": 2.0, "alpha": 0.7,
                                      "teacher_params": config["distillation"]["teacher_params"],
                                      "unlabeled": "shapes:32", "unlabeled_images": 32}
    assert config["num_train"] == 64 + 32
    history = (run / "history.csv").read_text().splitlines()[0]
    assert "distillation_loss" in history and "student_loss" in history
    # the report: teacher and baseline scored beside the student, in metrics.json and printed
    report = runs.read_json(run / "metrics.json")["distillation"]
    assert report["student"] == runs.read_json(run / "metrics.json")["val_accuracy"]
    assert report["baseline"] == runs.read_json(teacher_run / "metrics.json")["val_accuracy"]
    assert 0 <= report["teacher"] <= 1 and report["baseline_run"] == str(teacher_run)
    assert f"distillation: val_accuracy student {report['student']:.4f}  teacher {report['teacher']:.4f}" in out
    assert len(err.strip().splitlines()) == len(report["warnings"])
    # the "baseline" here is the teacher's run (width 8, the student 4): not the same budget, said so
    assert any("is not the same budget" in w and "model_args" in w for w in report["warnings"])
    exports_ok(run)


def test_distillation_report_warns_when_it_did_not_help():
    ok = distill.distillation_report(0.9, 0.95, "val_accuracy", 0.88, "base")
    assert ok["warnings"] == [] and ok["gain"] == pytest.approx(0.02)
    bad = distill.distillation_report(0.957, 0.953, "val_accuracy", 0.971, "base")
    assert len(bad["warnings"]) == 2
    assert "teacher (0.9530) is no better than its student (0.9570)" in bad["warnings"][0]
    assert "ends below training without --teacher (0.9710, base)" in bad["warnings"][1]
    assert "--unlabeled DIR" in bad["warnings"][1]  # what helped in the study, when it was not used
    with_unlabeled_ = distill.distillation_report(0.957, 0.953, "val_accuracy", 0.971, "base", unlabeled=True)
    assert with_unlabeled_["warnings"][1].endswith("distillation did not help here")
    assert distill.distillation_report(0.5, 0.6, "val_miou")["warnings"] == []


def test_report_names_the_extra_steps_of_unlabeled_images():
    """--unlabeled 400 on 100 labelled images: 5x the baseline's steps in as many epochs; the
    report says so and which --epochs matches them (the study's "same steps" control)."""
    student = {"epochs": 10, "num_train": 500, "batch_size": 16}
    baseline = {"epochs": 10, "num_train": 100, "batch_size": 16}
    assert distill.optimiser_steps(student) == 320 and distill.optimiser_steps({"epochs": 3}) is None
    steps = (distill.optimiser_steps(student), distill.optimiser_steps(baseline))
    report = distill.distillation_report(0.23, 0.86, "val_miou", 0.22, "small", unlabeled=True, steps=steps,
                                         epochs=10)
    assert report["steps"] == {"student": 320, "baseline": 70}
    assert report["warnings"] == ["the student took 4.6x the baseline's optimiser steps (320 vs 70; --unlabeled "
                                  "lengthens its epochs): part of any gain is the extra steps; a baseline trained "
                                  "with --epochs 46 is the like-for-like check"]
    same = distill.distillation_report(0.23, 0.86, "val_miou", 0.22, "small", steps=(70, 70), epochs=10)
    assert same["warnings"] == [] and same["steps"] == {"student": 70, "baseline": 70}
    # more steps without --unlabeled come from other epochs or batch: budget_differences names those
    assert distill.distillation_report(0.23, 0.86, "val_miou", 0.22, "small", steps=steps, epochs=10)["warnings"] == []


@pytest.mark.parametrize("given, unlabeled, expected", [
    (None, None, options.DEFAULT_ALPHA), (None, "shapes:4", options.DEFAULT_ALPHA_UNLABELED),
    (0.3, None, 0.3), (0.3, "shapes:4", 0.3)])
def test_alpha_default_depends_on_unlabeled(teacher_run, given, unlabeled, expected):
    """--alpha left out: 0.9 on the labelled images alone, 0.1 with --unlabeled (the study's
    choices, benchmarks/RESULTS.md); recorded as a number in config.json."""
    cfg = TrainConfig(arch="lenet5", data="shapes:8", teacher=str(teacher_run), alpha=given,
                      unlabeled=unlabeled).resolved()
    assert cfg.alpha == expected and cfg.record()["alpha"] == expected


def test_baseline_of_another_budget_is_named():
    base = {"arch": "lenet5", "epochs": 4, "img_size": 32, "data": "D", "seed": 0}
    same = dict(base, seed=1)  # another seed is the same budget
    assert distill.budget_differences(base, same) == []
    longer = dict(base, epochs=12)
    assert distill.budget_differences(base, longer) == ["epochs 4 (baseline) vs 12"]
    # other epochs but the same optimiser steps (46 x 7 vs 10 x 32 batches: a student with
    # --unlabeled 400 and the baseline its warning suggests): the same budget
    baseline46 = dict(base, epochs=46, num_train=100, batch_size=16)
    assert distill.budget_differences(baseline46, dict(baseline46, epochs=10, num_train=500)) == []
    assert distill.budget_differences(baseline46, dict(baseline46, epochs=10)) == ["epochs 46 (baseline) vs 10"]
    report = distill.distillation_report(0.9, 0.95, "val_accuracy", 0.88, "base",
                                         distill.budget_differences(base, longer))
    assert report["warnings"] == ["--baseline base is not the same budget (epochs 4 (baseline) vs 12): "
                                  "the comparison is not like for like"]


def test_unlabeled_images_join_with_no_label(tmp_path):
    source = load_data("shapes:8", "classification", 32)
    both = with_unlabeled(source, load_unlabeled("shapes:5", "classification", 32))
    targets = [int(y) for _, y in both.raw("train").as_numpy_iterator()]
    assert both.num_train == 13 and targets[8:] == [255] * 5 and max(targets[:8]) < 3
    seg = load_data("shapes:4", "segmentation", 32)
    masks = [y for _, y in with_unlabeled(seg, load_unlabeled("shapes:2", "segmentation", 32))
             .raw("train").as_numpy_iterator()]
    assert masks[-1].shape == (32, 32) and (masks[-1] == 255).all() and (masks[0] < 4).all()


def test_pixel_wise_distillation_for_segmentation(tmp_path, seg_teacher_run):
    from kcv.train import train

    run = train(tiny("unet", tmp_path, data="shapes:16", batch_size=8, teacher=str(seg_teacher_run),
                     model_args={"base_filters": 2, "depth": 2}))
    student, config = runs.load_run(run)
    assert config["params"] == student.count_params() < config["distillation"]["teacher_params"]
    assert np.isfinite(runs.read_json(run / "metrics.json")["val_miou"])


@pytest.mark.parametrize("argv, message", [
    (["--unlabeled", "shapes:4"], "--unlabeled needs --teacher"),
    (["--baseline", "{run}"], "--baseline needs --teacher"),
    (["--teacher", "{run}", "--baseline", "nowhere"], "--baseline nowhere: no such run directory"),
    (["--teacher", "{run}", "--baseline", "{unet}"], "not a finished classification run"),
    (["--teacher", "nowhere"], "--teacher nowhere: no such run directory"),
    (["--teacher", "{run}", "--alpha", "1.5"], "--alpha 1.5: must be in [0, 1]"),
    (["--teacher", "{run}", "--temperature", "0"], "--temperature 0.0: must be positive"),
    (["--teacher", "{run}", "--unlabeled", "shapes:4", "--alpha", "1"], "would get no loss"),
    (["--teacher", "{run}", "--unlabeled", "shapes:4", "--augment", "cutmix"], "cutmix/mixup"),
    (["--teacher", "{run}", "--img-size", "40"], "takes 32 px images; pass --img-size 32"),
    (["--teacher", "{unet}"], "a segmentation run; the student is classification"),
    (["--teacher", "{run}", "--unlabeled", "{empty}"], "no .png/.jpg/.bmp images directly in the folder"),
    (["--teacher", "{run}", "--unlabeled", "{bad}"], "bad.png: unreadable image"),
])
def test_bad_distillation_flags(tmp_path, teacher_run, seg_teacher_run, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "runs"
    subs = {"{run}": teacher_run, "{unet}": seg_teacher_run, "{empty}": tmp_path / "empty", "{bad}": tmp_path / "bad"}
    argv = [str(subs.get(a, a)) for a in argv]
    with learn_cnn() as arch:
        code, _, err = cli(["train", "--arch", arch, "--data", "shapes:8", "--img-size", "32",
                            "--out", out, *argv])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())  # nothing written
