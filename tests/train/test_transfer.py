"""Transfer learning: weight sources, head/backbone split, freezing, backbone learning rate."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

import kcv
from kcv import runs
from kcv.errors import KcvError
from kcv.train import transfer
from kcv.train.loop import TrainConfig
from tests.train.learn_fixtures import cli, exports_ok, teacher_run, learn_cnn, tiny  # noqa: F401

# one xdist worker for the learn tests: they share the teacher runs of learn_fixtures
pytestmark = pytest.mark.xdist_group("learn")


def _model(width=8, classes=3):
    from tests.export.fixtures import build_test_cnn

    return build_test_cnn(classes, (32, 32, 3), width=width)


def _weights_by_name(model, trainable_only=False):
    return {layer.name: [np.asarray(w) for w in (layer.trainable_weights if trainable_only else layer.weights)]
            for layer in model.layers if layer.weights}


def test_head_and_backbone_of_a_classifier():
    model = _model()
    assert transfer.head_layers(model) == {"logits"}
    backbone = transfer.backbone_layers(model, "classification", "kcv_test_cnn")
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert weighted - backbone == {"logits"}  # everything before the head


def test_backbone_of_segmentation_models_is_the_encoder():
    unet = kcv.create_model("unet", 4, (32, 32, 3), base_filters=4, depth=2)
    backbone = transfer.backbone_layers(unet, "segmentation", "unet", {})
    assert {"unet_down0_1_conv", "unet_down1_2_bn"} <= backbone
    assert not any(n.startswith(("unet_up", "unet_bottleneck", "unet_head")) for n in backbone)
    assert transfer.head_layers(unet) == {"unet_head"}
    on_mnv2 = kcv.create_model("unet", 4, (32, 32, 3), backbone="mobilenet_v2",
                               backbone_args={"alpha": 0.35}, base_filters=4)
    backbone = transfer.backbone_layers(on_mnv2, "segmentation", "unet", {"backbone": "mobilenet_v2"})
    assert "mobilenet_v2_out_relu" in backbone and "mobilenet_v2_block0_project_bn" in backbone
    assert not any(n.startswith("unet_dec") for n in backbone)


def test_sources_by_name_head_skipped_class_count_differs(tmp_path, teacher_run):
    source, _ = runs.load_run(teacher_run)
    want = _weights_by_name(source)
    source.save_weights(tmp_path / "w.weights.h5")
    for where in (teacher_run, teacher_run / "model.keras", tmp_path / "w.weights.h5"):
        model = _model(classes=5)  # another task: 5 classes, the head cannot be reused anyway
        report = transfer.load_pretrained(model, where)
        assert report.matched_by == "name" and report.head == ["logits"]
        assert len(report.transferred) == report.total - 1 == 12
        got = _weights_by_name(model)
        for name in report.transferred:
            for a, b in zip(got[name], want[name]):
                np.testing.assert_array_equal(a, b)
        assert got["logits"][0].shape == (32, 5)


def test_keras_applications_file_by_its_name_never_by_order(tmp_path):
    """A keras.applications weights file (Keras 2 .h5 layout) whose layer names differ from
    kcv's: under keras.applications' own file name it is recognised and loaded exactly (the
    features then agree); under another name it is refused — kcv never matches by layer
    order, which would load weights into a network that may normalise its input differently."""
    from keras.src.legacy.saving import legacy_h5_format

    src = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    known = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    unknown = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_32_no_top.h5"
    for path in (known, unknown):
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, src)
    model = kcv.create_model("mobilenet_v2", 5, (32, 32, 3), alpha=0.35)
    with pytest.raises(KcvError, match="does not match by layer order"):
        transfer.load_pretrained(model, unknown)
    report = transfer.load_pretrained(model, known, "mobilenet_v2", {"alpha": 0.35})
    assert report.matched_by == "keras.applications ImageNet file"
    assert len(report.transferred) == report.total - 1 and report.head == ["logits"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ours = keras.Model(model.inputs, model.get_layer("mobilenet_v2_out_relu").output)
    # keras.applications' MobileNetV2 expects [-1, 1] inputs; kcv's first layer does that scaling
    np.testing.assert_allclose(ours(x), src(x / 127.5 - 1), atol=1e-5)


def test_nothing_matches_is_an_error(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7, name="unrelated")])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(KcvError, match="no layer of .* matches"):
        transfer.load_pretrained(_model(), tmp_path / "other.weights.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(KcvError, match="not a readable Keras weights file"):
        transfer.load_pretrained(_model(), tmp_path / "junk.h5")


def _one_step(mult, optimizer, teacher_run):
    """Fine-tune a pretrained model for one step through the plugin; return (backbone Δ, head Δ)."""
    plugin = transfer.TransferPlugin()
    with learn_cnn() as arch:
        cfg = tiny(arch, ".", pretrained=str(teacher_run), backbone_lr_mult=mult, optimizer=optimizer,
                   model_args={"width": 8}, verbose=0).resolved()
    keras.utils.set_random_seed(0)
    model = _model()
    source = type("S", (), {"task": "classification"})()
    model = plugin.prepare_model(model, cfg, source)
    opt = {"sgd": keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
           "adamw": keras.optimizers.AdamW(1e-3, weight_decay=0.1)}[optimizer]
    if optimizer == "adamw":
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    args = plugin.compile_args({"optimizer": opt}, cfg, source)
    model.compile(optimizer=args["optimizer"], loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # no tracing: the same update_step code, faster for one step
    before = _weights_by_name(model, trainable_only=True)
    x = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.train_on_batch(x, np.arange(8) % 3)
    after = _weights_by_name(model, trainable_only=True)
    delta = {n: [a - b for a, b in zip(after[n], before[n])] for n in after}
    return delta, plugin.backbone


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_backbone_lr_mult_scales_the_backbone_step(optimizer, teacher_run):
    """One step from the same weights on the same batch (same gradients): the backbone's
    weights move 0.1x as far with --backbone-lr-mult 0.1 as with 1.0; the head as far."""
    full, backbone = _one_step(1.0, optimizer, teacher_run)
    tenth, _ = _one_step(0.1, optimizer, teacher_run)
    kernel = "cnn_s0a_conv"
    assert kernel in backbone and np.abs(full[kernel][0]).max() > 0
    for name in full:
        ratio = 0.1 if name in backbone else 1.0
        for a, b in zip(tenth[name], full[name]):  # kernels, biases, BN gamma and beta
            # deltas of float32 weights: exact up to the weights' own rounding (~1e-7)
            np.testing.assert_allclose(a, ratio * b, rtol=1e-4, atol=3e-7)


def test_freeze_backbone_keeps_it_bit_identical(tmp_path, teacher_run):
    from kcv.train import train

    with learn_cnn() as arch:
        run = train(tiny(arch, tmp_path, pretrained=str(teacher_run), freeze_backbone=True,
                         model_args={"width": 8}, lr=0.05))
    source, _ = runs.load_run(teacher_run)
    tuned, config = runs.load_run(run)
    want, got = _weights_by_name(source), _weights_by_name(tuned)
    assert config["transfer"]["layers_transferred"] == 12
    for name in got:
        if name == "logits":
            assert not np.array_equal(got[name][0], want[name][0])  # the new head learnt
        else:  # kernels, BN gamma/beta AND moving statistics: BN ran in inference mode
            for a, b in zip(got[name], want[name]):
                np.testing.assert_array_equal(a, b)
    exports_ok(run)  # a fine-tuned run exports like any other


@pytest.mark.parametrize("argv, message", [
    (["--freeze-backbone"], "--freeze-backbone needs --pretrained"),
    (["--backbone-lr-mult", "0.1"], "--backbone-lr-mult needs --pretrained"),
    (["--pretrained", "nowhere/run"], "--pretrained nowhere/run: no such run directory or file"),
    (["--pretrained", "{run}", "--freeze-backbone", "--backbone-lr-mult", "0.1"], "exclude each other"),
    (["--pretrained", "{run}", "--backbone-lr-mult", "-1"], "must be >= 0"),
])
def test_bad_transfer_flags(tmp_path, teacher_run, argv, message):
    argv = [a.replace("{run}", str(teacher_run)) for a in argv]
    with learn_cnn() as arch:
        code, _, err = cli(["train", "--arch", arch, "--data", "shapes:8", "--img-size", "32",
                            "--out", tmp_path, *argv])
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_config_records_the_transfer_flags():
    assert {"pretrained", "freeze_backbone", "backbone_lr_mult", "teacher", "temperature", "alpha",
            "unlabeled"} <= set(TrainConfig(arch="unet").record())
