"""Pseudo-labels and Noisy Student self-training (``kcv self-train``)."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

from kcv import runs
from kcv.contracts import CONFIG_FILE, MODEL_FILE
from kcv.augment import Augmenter
from kcv.data.pipeline import load_data
from kcv.data.unlabeled import load_unlabeled
from kcv.train import self_training as st
from tests.train.learn_fixtures import cli, exports_ok, learn_cnn, teacher_run  # noqa: F401

# one xdist worker for the learn tests: they share the teacher runs of learn_fixtures
pytestmark = pytest.mark.xdist_group("learn")


def _colour_classifier():
    """A fixed "teacher": logits = 10 × (mean R, mean G, mean B) in [0, 1], so its
    confidence varies from image to image and is known in NumPy."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(10.0 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Identity(name="logits")(x))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_threshold_drops_unconfident_pseudo_labels():
    unlabeled = load_unlabeled("shapes:40", "classification", 32)
    probs = _softmax(10.0 * unlabeled.items.reshape(40, -1, 3).mean(1) / 255)
    threshold = float(np.median(probs.max(-1)))
    hard = st.pseudo_label(_colour_classifier(), unlabeled, "classification", threshold)
    keep = np.flatnonzero(probs.max(-1) >= threshold)
    np.testing.assert_array_equal(hard.indices, keep)
    np.testing.assert_array_equal(hard.targets, probs.argmax(-1)[keep])
    assert 0 < len(keep) < 40 and hard.total == 40 and hard.accuracy is not None
    soft = st.pseudo_label(_colour_classifier(), unlabeled, "classification", threshold, soft=True)
    np.testing.assert_allclose(soft.targets, probs[keep], atol=1e-5)


def test_balanced_pseudo_labels():
    """Noisy Student's balancing: equal counts per predicted class, the most confident of a
    large class, repeats of a small one; a class never predicted stays empty."""
    hard = np.array([0, 0, 0, 0, 0, 0, 2, 2, 0, 2])
    conf = np.array([0.9, 0.5, 0.8, 0.7, 0.95, 0.6, 0.75, 0.9, 0.2, 0.85])
    keep = np.flatnonzero(conf >= 0.5)  # index 8 is dropped by the threshold
    got = st.balanced(keep, hard, conf, 3)
    np.testing.assert_array_equal(got, [4, 0, 2, 3, 5, 7, 9, 6, 7, 9])  # quota ceil(9 / 2) = 5
    assert st.balanced(np.array([], int), hard, conf, 3).size == 0


def test_segmentation_pseudo_labels_ignore_unconfident_pixels():
    unlabeled = load_unlabeled("shapes:6", "segmentation", 32)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(4.0 / 255),
                              keras.layers.Conv2D(4, 1, kernel_initializer="ones", name="logits")])
    model.get_layer("logits").set_weights([np.eye(3, 4)[None, None], np.zeros(4)])  # logit 3 = 0
    probs = _softmax(np.concatenate([unlabeled.items * 4.0 / 255, np.zeros((6, 32, 32, 1))], -1))
    labels = st.pseudo_label(model, unlabeled, "segmentation", 0.5)
    want = np.where(probs.max(-1) >= 0.5, probs.argmax(-1), 255)
    np.testing.assert_array_equal(labels.targets, want[labels.indices])
    assert 0 < labels.pixel_fraction < 1 and (want[labels.indices] != 255).any(axis=(1, 2)).all()


def test_an_image_always_travels_with_its_own_pseudo_label(tmp_path):
    """Shuffled, batched and augmented, every training element is (image, that image's
    pseudo-label): one tf.data element carries both."""
    unlabeled = load_unlabeled("shapes:30", "classification", 32)
    labels = st.PseudoLabels(np.arange(0, 30, 2), np.arange(15, dtype=np.int32) % 3, 30)
    npz = st.save_pseudo_labels(tmp_path / "pl.npz", labels, unlabeled, 0.5, soft=False)
    source = st.with_pseudo_labels(load_data("shapes:10", "classification", 32), npz)
    assert source.num_train == 25 and not source.soft_targets
    truth = {hashlib.md5(unlabeled.items[i].tobytes()).hexdigest(): int(t)
             for i, t in zip(labels.indices, labels.targets)}
    # identity "augmentation" that still runs in the stream's map, after shuffling and batching
    stream = source.train_stream(8, seed=3, epochs=2, augment=Augmenter("none", "classification", 3))
    seen = 0
    for images, targets in stream.as_numpy_iterator():
        for img, t in zip(images.astype(np.uint8), targets):
            key = hashlib.md5(img.tobytes()).hexdigest()
            if key in truth:
                assert truth[key] == int(t)
                seen += 1
    assert seen == 2 * 15


def test_soft_pseudo_labels_make_soft_targets(tmp_path):
    unlabeled = load_unlabeled("shapes:6", "classification", 32)
    probs = _softmax(np.random.default_rng(0).normal(size=(6, 3))).astype(np.float32)
    npz = st.save_pseudo_labels(tmp_path / "pl.npz", st.PseudoLabels(np.arange(6), probs, 6),
                                unlabeled, 0.0, soft=True)
    source = st.with_pseudo_labels(load_data("shapes:4", "classification", 32), npz)
    targets = np.stack([y for _, y in source.raw("train").as_numpy_iterator()])
    assert source.soft_targets and targets.shape == (10, 3)
    np.testing.assert_allclose(targets[4:], probs)
    assert set(np.unique(targets[:4])) <= {0.0, 1.0}  # labelled images: one-hot
    images, batch = next(iter(source.train_stream(10, seed=0, epochs=1, one_hot=True)))
    assert batch.dtype.name == "float32" and batch.shape == (10, 3)


def test_self_train_run(tmp_path):
    """Two rounds through the CLI: layout, summary, the final student as the run's model,
    and an export like any other run's."""
    with learn_cnn() as arch:
        code, out, err = cli(["self-train", "--arch", arch, "--data", "shapes:32", "--unlabeled", "shapes:24",
                              "--rounds", 2, "--patience", 2, "--threshold", 0.3, "--img-size", 32, "--epochs", 1,
                              "--batch-size", 32, "--augment", "none", "--noise", "flip",
                              "--model-arg", "width=4", "--out", tmp_path, "--name", "st", "--quiet"])
        assert code == 0, err
    run = tmp_path / "st"
    assert "| 2 | kcv_test_cnn | student |" in out and "pseudo-labels kept" in out
    assert "| per class | train acc |" in out and "result: round" in out
    for r in (0, 1, 2):
        assert runs.is_run_dir(run / "rounds" / f"round{r}")
    assert (run / "rounds" / "pseudo_labels_round2.npz").is_file()
    config = runs.load_config(run)
    rows = config["self_training"]["summary"]
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[1]["unlabeled_images"] == 24
    assert rows[2]["train_images"] == 32 + rows[2]["pseudo_labels_kept"]
    # the result is the best round on validation, the teacher included
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert [r["chosen"] for r in rows] == [r is best for r in rows]
    assert config["self_training"]["chosen_round"] == best["round"]
    chosen = run / "rounds" / f"round{best['round']}"
    assert (run / "model.keras").read_bytes() == (chosen / "model.keras").read_bytes()
    assert runs.read_json(run / "metrics.json") == runs.read_json(chosen / "metrics.json")
    assert config["name"] == "st"
    for row in rows[1:]:
        assert sum(row["kept_per_class"]) >= 0.5 * 24 and 0 <= row["train_accuracy"] <= 1
        assert len(row["class_thresholds"]) == 3
    assert (run / "summary.csv").read_text().startswith("round,arch,role")
    exports_ok(run)


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "--rounds 0: must be at least 1"),
    (["--threshold", "1.5"], "--threshold 1.5: must be in [0, 1)"),
    (["--unlabeled", "{nowhere}"], "--unlabeled {nowhere}: folder not found"),
    (["--teacher", "{nowhere}"], "--teacher {nowhere}: no such run directory"),
    (["--student-arch", "unet"], "--student-arch unet: a segmentation model"),
    (["--noise", "bogus"], "bogus"),
])
def test_bad_self_train_flags(tmp_path, argv, message):
    nowhere = str(tmp_path / "nowhere")
    argv = [a.replace("{nowhere}", nowhere) for a in argv]
    out = tmp_path / "runs"
    with learn_cnn() as arch:
        code, _, err = cli(["self-train", "--arch", arch, "--data", "shapes:8", "--img-size", 32,
                            "--out", out, *argv])
    assert code == 2 and message.replace("{nowhere}", nowhere) in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())


def test_soft_labels_are_for_classification(tmp_path, capsys):
    code, _, err = cli(["self-train", "--arch", "unet", "--soft", "--out", tmp_path])
    assert code == 2 and "--soft: soft pseudo-labels are for classification" in err


def test_class_thresholds_keep_a_share_of_every_predicted_class():
    conf = np.array([0.9, 0.4, 0.35, 0.3, 0.95, 0.5, 0.45, 0.2])
    hard = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    tau = st.class_thresholds(conf, hard, 3, threshold=0.8, min_keep=0.5)
    # class 0: 0.9 is above 0.8, and the 2 most confident of 4 are kept; class 2 never predicted
    np.testing.assert_allclose(tau, [0.4, 0.5, 0.8])
    kept = conf >= tau[hard]
    assert kept.tolist() == [True, True, False, False, True, True, False, False]
    np.testing.assert_allclose(st.class_thresholds(conf, hard, 3, 0.8, 0.0), [0.8] * 3)


def test_an_unconfident_teacher_still_labels_a_stable_share():
    """The colour teacher at logit scale 1 is never 0.8-confident: a fixed threshold keeps
    nothing, class-wise thresholds keep at least half of each predicted class."""
    unlabeled = load_unlabeled("shapes:40", "classification", 32)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1.0 / 255)(inputs))
    teacher = keras.Model(inputs, keras.layers.Identity(name="logits")(x))
    fixed = st.pseudo_label(teacher, unlabeled, "classification", 0.8)
    assert len(fixed.indices) == 0
    adaptive = st.pseudo_label(teacher, unlabeled, "classification", 0.8, min_keep=0.5)
    predicted = np.bincount((unlabeled.items.reshape(40, -1, 3).mean(1)).argmax(-1), minlength=3)
    kept = np.array(adaptive.extra["kept_per_class"])
    assert (kept >= np.ceil(0.5 * predicted)).all() and kept.sum() >= 20
    assert len(adaptive.extra["class_thresholds"]) == 3


def _fake_run(root, name, score, arch="kcv_test_cnn"):
    """A real run directory (a real, untrained model) whose validation score is ``score``."""
    from kcv.data import shapes
    from tests.export.fixtures import build_test_cnn

    run = root / name
    runs.save_model(build_test_cnn(3, width=4), run / MODEL_FILE)
    runs.write_json(run / CONFIG_FILE, {"arch": arch, "task": "classification", "img_size": 32,
                                             "num_classes": 3, "num_train": 32,
                                             "class_names": shapes.class_names("classification")})
    runs.write_json(run / "metrics.json", {"val_accuracy": score})
    return run


@pytest.mark.parametrize("scores, patience, ran, chosen", [
    ([0.5, 0.6, 0.7], 1, [0, 1, 2], 2),  # every student better: all rounds, the last wins
    ([0.6, 0.5, 0.9], 1, [0, 1], 0),  # round 1 worse: stop, the teacher is the result
    ([0.6, 0.5, 0.7], 2, [0, 1, 2], 2),  # patience 2: round 2 (taught by round 1, the latest) wins
    ([0.6, 0.6, 0.55], 2, [0, 1, 2], 0),  # a tie does not beat the teacher
])
def test_best_round_and_patience(tmp_path, monkeypatch, scores, patience, ran, chosen):
    """The run's model is the best of the teacher and the students; rounds stop after
    --patience students that do not beat it; each student is taught by the latest model
    (Noisy Student), so a round after one that did not improve gets new pseudo-labels.
    (``train`` is replaced by runs with fixed scores: this checks the choice, not fitting.)"""
    from kcv.train import loop

    made = iter(scores[1:])
    teachers = []
    real_pseudo_label = st.pseudo_label

    def spy(model, *a, **k):
        teachers.append(model.name)
        return real_pseudo_label(model, *a, **k)

    def fake_train(cfg):
        return _fake_run(tmp_path / "made", cfg.name, next(made))

    monkeypatch.setattr(loop, "train", fake_train)
    monkeypatch.setattr(st, "pseudo_label", spy)
    with learn_cnn() as arch:
        teacher = _fake_run(tmp_path, "teacher", scores[0], arch)
        monkeypatch.setattr(st, "_teacher_row", lambda cfg, base, rd, say: st._row(0, teacher, "teacher (given)"))
        cfg = st.SelfTrainConfig(st.TrainConfig(arch=arch, data="shapes:16", img_size=32, epochs=1,
                                                out=str(tmp_path / "out"), name="st", verbose=0),
                                 unlabeled="shapes:12", rounds=2, round_patience=patience, noise="flip")
        run = st.self_train(cfg)
    info = runs.load_config(run)["self_training"]
    assert [r["round"] for r in info["summary"]] == ran
    assert info["chosen_round"] == chosen and [r["chosen"] for r in info["summary"]].count(True) == 1
    assert [r.get("teacher_round") for r in info["summary"][1:]] == ran[:-1]
    assert runs.read_json(run / "metrics.json")["val_accuracy"] == scores[chosen]
    assert ("stopped" in info["reason"]) == (len(ran) < 3)


def test_a_round_that_keeps_nothing_ends_the_rounds(tmp_path, monkeypatch):
    """An untrained teacher is never 0.99-confident: with the fixed threshold (--min-keep 0)
    round 1 keeps nothing, the rounds end with one line and the result is the teacher — no
    traceback (it was a TypeError from an empty file list)."""
    with learn_cnn() as arch:
        teacher = _fake_run(tmp_path, "teacher", 0.34, arch)
        code, out, err = cli(["self-train", "--arch", arch, "--teacher", teacher, "--data", "shapes:12",
                              "--unlabeled", "shapes:8", "--rounds", 2, "--threshold", 0.99, "--min-keep", 0,
                              "--img-size", 32, "--out", tmp_path / "out", "--name", "st"])
    assert code == 0, err
    assert "no pseudo-label reached the threshold 0.99" in out and "Traceback" not in err
    info = runs.load_config(tmp_path / "out" / "st")["self_training"]
    assert info["chosen_round"] == 0 and [r["round"] for r in info["summary"]] == [0]


def test_default_noise_scales_with_image_size_and_capacity():
    assert st.default_noise(224, 25_000_000) == "flip,crop=0.8,randaugment=2x9"
    assert st.default_noise(32, 60_000) == "flip,crop=0.9,randaugment=1x2"
    assert st.default_noise(32, 5_000_000) == "flip,crop=0.9,randaugment=1x3"
    Augmenter(st.default_noise(32, 60_000), "classification", 3)  # a valid policy


def test_near_chance_follows_the_validation_size():
    """0.4324 on 37 images and 3 classes is within two binomial std of guessing (a real run
    whose pseudo-labels were 0.331 accurate); on 2,000 images it is not."""
    assert st.near_chance(0.4324, "classification", 3, 37)
    assert not st.near_chance(0.4324, "classification", 3, 2000)
    assert st.near_chance(0.37, "classification", 3)  # fixed margin 0.05 without a count
    assert not st.near_chance(0.39, "classification", 3)
    assert st.near_chance(None, "classification", 3)
    assert st.near_chance(0.24, "segmentation", 4) and not st.near_chance(0.26, "segmentation", 4)
