"""The k-NN model: batched vote against a non-trainable reference set, in Keras and LiteRT."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kcv.errors import KcvError
from kcv.export.tflite import convert_fp32
from kcv.runtime.runners import LiteRTRunner
from kcv.models import inference_model
from kcv.export import verify
from kcv.models.classification.knn import NearestNeighbors, build_knn, neighbour_ties


def brute_force(x, refs, labels, k, metric, weighting, num_classes):
    """Vote fractions computed sample by sample, the textbook way."""
    out = np.zeros((len(x), num_classes))
    for b, q in enumerate(x):
        if metric == "cosine":  # centred on the references' mean (CL2N)
            r, v = refs - refs.mean(0), q - refs.mean(0)
            d = 1 - r @ v / (np.linalg.norm(r, axis=1) * np.linalg.norm(v))
        else:
            d = np.linalg.norm(refs - q, axis=1)
        nearest = np.argsort(d, kind="stable")[:k]
        for n in nearest:
            out[b, labels[n]] += 1.0 / (d[n] + 1e-6) if weighting == "distance" else 1.0
    return out / out.sum(1, keepdims=True)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("weighting", ["uniform", "distance"])
def test_vote_matches_brute_force(metric, weighting, rng):
    refs = rng.normal(size=(40, 7)).astype("float32")
    labels = rng.integers(0, 4, 40)
    layer = NearestNeighbors(40, 4, k=5, metric=metric, weighting=weighting)
    layer.build((None, 7))
    layer.set_reference(refs, labels)
    x = rng.normal(size=(9, 7)).astype("float32")
    probs = np.asarray(keras.ops.softmax(layer(x)))
    want = brute_force(x, refs, labels, 5, metric, weighting, 4)
    np.testing.assert_allclose(probs, want, atol=5e-3)  # 1e-3 smoothing per class
    assert np.array_equal(probs.argmax(1), want.argmax(1))


def _pixel_model(rng, n=30, size=8, classes=3):
    model = build_knn(classes, (size, size, 3), k=3, reference_size=n)
    refs = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    labels = rng.integers(0, classes, n)
    # The reference features are the model's own normalised pixels.
    feats = keras.Model(model.inputs[0], model.get_layer("logits").input)(refs)
    model.get_layer("logits").set_reference(np.asarray(feats), labels)
    return model, refs, labels


def test_reference_set_is_non_trainable_and_survives_save_load(rng, tmp_path):
    model, refs, labels = _pixel_model(rng)
    assert model.trainable_weights == []
    assert {w.name for w in model.non_trainable_weights} == {"references", "labels"}
    path = tmp_path / "knn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded.get_layer("logits").labels), labels)
    np.testing.assert_allclose(np.asarray(loaded(refs[:4])), np.asarray(model(refs[:4])), atol=1e-5)


def test_k1_recalls_the_stored_labels(rng):
    model = build_knn(3, (8, 8, 3), k=1, reference_size=12)
    refs = rng.uniform(0, 255, (12, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, 12)
    feats = keras.Model(model.inputs[0], model.get_layer("logits").input)(refs)
    model.get_layer("logits").set_reference(np.asarray(feats), labels)
    np.testing.assert_array_equal(np.asarray(model(refs)).argmax(1), labels)


def test_tflite_runs_in_litert_with_the_same_probabilities(rng, tmp_path):
    model, refs, _ = _pixel_model(rng)
    infer = inference_model(model)
    path = tmp_path / "knn.tflite"
    convert_fp32(infer, path)
    x = rng.uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    got, want = LiteRTRunner(path)(x), np.asarray(infer(x))
    assert got.shape == want.shape == (5, 3)
    assert np.max(np.abs(got - want)) <= 1e-4


def test_cosine_on_positive_features_is_stable_in_float32_and_litert(rng, tmp_path):
    """ReLU-like features: all positive, within a degree of one another. Uncentred, their
    cosine similarities differ only in the 6th decimal and float32 noise reorders the
    neighbours; centred on the references' mean the vote is the float64 textbook one, in
    Keras and in LiteRT."""
    base = rng.uniform(1, 2, 64)
    refs = (base + rng.normal(0, 0.02, (300, 64))).astype("float32")
    labels = rng.integers(0, 3, 300)
    x = (base + rng.normal(0, 0.02, (40, 64))).astype("float32")
    uncentred = refs.astype(np.float64) @ x.T.astype(np.float64)
    uncentred /= np.linalg.norm(refs, axis=1)[:, None] * np.linalg.norm(x, axis=1)[None, :]
    assert uncentred.min() > 0.999  # the ill-conditioned case this is about

    inputs = keras.Input((64,))
    layer = NearestNeighbors(300, 3, k=7, metric="cosine", weighting="distance", name="logits")
    model = keras.Model(inputs, layer(inputs))
    layer.set_reference(refs, labels)
    want = brute_force(x.astype(np.float64), refs.astype(np.float64), labels, 7, "cosine", "distance", 3)
    probs = np.asarray(keras.ops.softmax(model(x)))
    np.testing.assert_allclose(probs, want, atol=5e-3)
    infer = inference_model(model)
    path = tmp_path / "knn_cosine.tflite"
    convert_fp32(infer, path)
    got = np.concatenate([LiteRTRunner(path)(x[i:i + 1]) for i in range(len(x))])
    assert np.max(np.abs(got - np.asarray(infer(x)))) <= 1e-4


def test_neighbour_ties_are_found_and_left_out_of_the_export_check():
    """Query 0 is as far from its 2nd as from its 3rd nearest reference (k=2): any float
    noise may swap them, so export verification must not judge it by max |Δprob|."""
    refs = np.array([[0.0], [3.0], [-3.0], [7.0], [10.0]], "float32")
    inputs = keras.Input((1,))
    layer = NearestNeighbors(5, 2, k=2, name="logits")
    model = keras.Model(inputs, layer(inputs))
    layer.set_reference(refs, np.array([0, 0, 1, 1, 1]))
    x = np.array([[0.0], [0.9]], "float32")  # 0.0: references 3 and -3 (labels 0 and 1) tie at 3
    ties = neighbour_ties(model, x)
    np.testing.assert_array_equal(ties, [True, False])
    assert neighbour_ties(keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)]), x) is None

    reference = np.array([[0.7, 0.3], [0.9, 0.1]])
    candidate = np.array([[0.4, 0.6], [0.9, 0.1 + 2e-5]])  # a swap at the tie; noise elsewhere
    entry = verify.compare(reference, candidate, np.array([0, 0]), "classification", 2, ties=ties)
    assert entry["max_abs_diff"] == pytest.approx(2e-5) and entry["ties"] == 1
    assert entry["max_abs_diff_ties"] == pytest.approx(0.3) and entry["agreement"] == 0.5
    assert "ties" not in verify.compare(reference, candidate, np.array([0, 0]), "classification", 2)


def test_bad_settings_are_user_errors():
    with pytest.raises(KcvError, match="metric='manhattan'"):
        build_knn(3, (8, 8, 3), metric="manhattan")
    with pytest.raises(KcvError, match="weighting='rank'"):
        build_knn(3, (8, 8, 3), weighting="rank")
    with pytest.raises(KcvError, match="k=9"):
        build_knn(3, (8, 8, 3), k=9, reference_size=4)
