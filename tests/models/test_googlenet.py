"""GoogLeNet: table-1 modules, auxiliary heads in the training model only, their loss.

Convention: the paper (no BatchNorm) has conv biases; its table 1 counts weights only (K =
1024) and excludes the auxiliary heads, so the reference comparison uses the inference
model's weights without biases (6,990,272 vs the table's 6,960,845: +0.42%, most of it the
table's 2.7K for the 7×7 stem conv, whose weights are 9,408). torchvision's googlenet
(6,624,904) differs on purpose: BN convs and 3×3 kernels in the "5×5" branch.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kcv
from kcv import metrics
from kcv.data import shapes
from kcv.export.tflite import convert_fp32
from kcv.models import inference_model
from kcv.models.analysis import count_macs
from kcv.models.classification.googlenet import INCEPTION, AuxiliaryHeadsModel
from kcv.registry import get_spec
from kcv.runtime.runners import LiteRTRunner
from tests.models.taps import check_taps

PAPER_TABLE_K = (2.7, 112, 159, 380, 364, 437, 463, 580, 840, 1072, 1388, 1000)


def ce(y, logits):
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    x, y = shapes.make_split(4, 32, "classification")
    model = kcv.create_model("googlenet", 3, (32, 32, 3))
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=metrics.training_metrics("classification", 3), jit_compile=False)
    return model, x.astype("float32"), y.astype("int32")


def test_parameter_counts_at_224():
    model = kcv.create_model("googlenet", 1000, (224, 224, 3))
    infer = inference_model(model)
    weights_only = sum(int(np.prod(w.shape)) for w in infer.trainable_weights if len(w.shape) > 1)
    paper = round(sum(PAPER_TABLE_K) * 1024)
    assert paper == get_spec("googlenet").reference["params"] == 6_960_845
    assert weights_only == 6_990_272 and abs(weights_only / paper - 1) < 0.01
    assert infer.count_params() == 6_998_552       # with biases, inference model
    assert model.count_params() == 13_378_280      # training model, auxiliary heads included
    assert count_macs(infer) / 1e9 == pytest.approx(1.5, rel=0.06)  # paper: 1.5 B mult-adds


def test_inception_modules_follow_table_1():
    model = kcv.create_model("googlenet", 10, (224, 224, 3))
    expected_out = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528,
                    "4e": 832, "5a": 832, "5b": 1024}
    for key, widths in INCEPTION.items():
        prefix = f"googlenet_inception{key}"
        got = tuple(model.get_layer(f"{prefix}_{b}").output.shape[-1]
                    for b in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"))
        assert got == widths
        assert model.get_layer(f"{prefix}_5x5").kernel_size == (5, 5)
        assert model.get_layer(f"{prefix}_out").output.shape[-1] == expected_out[key]
    assert model.get_layer("googlenet_inception5b_out").output.shape[1] == 7


def test_training_model_has_two_aux_heads_and_the_inference_model_none(small):
    model, x, _ = small
    assert isinstance(model, AuxiliaryHeadsModel) and len(model.outputs) == 3
    assert model.output_names[0] == "logits"
    infer = inference_model(model)
    assert len(infer.outputs) == 1
    assert not any("aux" in layer.name for layer in infer.layers)


def test_loss_is_main_plus_0_3_times_each_aux(small):
    model, x, y = small
    main, aux1, aux2 = model(x, training=False)
    want = ce(y, main) + 0.3 * (ce(y, aux1) + ce(y, aux2))
    got = float(model.compute_loss(x, y, [main, aux1, aux2], training=True))
    assert got == pytest.approx(want, rel=1e-5)
    # Evaluation reports the main head only, comparable with single-head models.
    assert float(model.compute_loss(x, y, [main, aux1, aux2], training=False)) == pytest.approx(
        ce(y, main), rel=1e-5)


def test_a_loss_given_by_name_works_too(small):
    model, x, y = small
    named = kcv.create_model("googlenet", 3, (32, 32, 3))
    named.compile(loss="sparse_categorical_crossentropy")
    probs = [keras.ops.softmax(t) for t in model(x, training=False)]
    named_loss = float(named.compute_loss(x, y, probs, training=True))
    want = sum(w * ce(y, np.log(np.asarray(p))) for w, p in zip((1, 0.3, 0.3), probs))
    assert named_loss == pytest.approx(want, rel=1e-4)


def test_fit_reports_plain_metric_names(small):
    model, x, y = small
    hist = model.fit(x, y, batch_size=2, epochs=1, validation_data=(x, y), verbose=0)
    assert {"loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy",
            "val_top5_accuracy"} == set(hist.history)


def test_save_load_keeps_the_class_and_aux_weight(small, tmp_path):
    model, x, _ = small
    path = tmp_path / "g.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, AuxiliaryHeadsModel) and loaded.aux_weight == pytest.approx(0.3)
    for a, b in zip(loaded(x, training=False), model(x, training=False)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_exported_tflite_has_one_output(small, tmp_path):
    model, x, _ = small
    infer = inference_model(model)
    path = tmp_path / "g.tflite"
    convert_fp32(infer, path)
    runner = LiteRTRunner(path)
    assert len(runner.interpreter.get_output_details()) == 1
    np.testing.assert_allclose(runner(x[:1]), np.asarray(infer(x[:1])), atol=1e-4)


def test_feature_taps():
    feats = check_taps("googlenet", size=64)
    assert feats[32].shape[-1] == 1024
