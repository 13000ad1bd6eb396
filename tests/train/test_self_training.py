"""Pseudo-labels and Noisy Student self-training (``kcv self-train``)."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

from kcv import runs
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
                              "--rounds", 2, "--threshold", 0.3, "--img-size", 32, "--epochs", 1,
                              "--batch-size", 32, "--augment", "none", "--noise", "flip",
                              "--model-arg", "width=4", "--out", tmp_path, "--name", "st", "--quiet"])
        assert code == 0, err
    run = tmp_path / "st"
    assert "| 2 | kcv_test_cnn | student |" in out and "pseudo-labels kept" in out
    for r in (0, 1, 2):
        assert runs.is_run_dir(run / "rounds" / f"round{r}")
    assert (run / "rounds" / "pseudo_labels_round2.npz").is_file()
    final = run / "rounds" / "round2"
    assert (run / "model.keras").read_bytes() == (final / "model.keras").read_bytes()
    assert runs.read_json(run / "metrics.json") == runs.read_json(final / "metrics.json")
    config = runs.load_config(run)
    assert config["pseudo_labels_used"]["file"].endswith("pseudo_labels_round2.npz")
    assert config["augment"] == "flip" and config["name"] == "st"
    rows = config["self_training"]["summary"]
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[1]["unlabeled_images"] == 24
    assert rows[2]["train_images"] == 32 + rows[2]["pseudo_labels_kept"]
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
