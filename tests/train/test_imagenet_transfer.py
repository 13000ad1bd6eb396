"""`--pretrained imagenet` and keras.applications files as `--pretrained FILE`, offline: the
weight files are keras.applications networks with random weights, written by the tests
under a temporary KERAS_HOME in keras.applications' own layout and names."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kcv
from kcv import runs
from kcv import weights as wf
from kcv.errors import KcvError
from kcv.train import transfer
from tests.conftest import write_classification_folders
from tests.models.imagenet_reference import preprocess, randomize, reference_model, save_weight_file
from tests.train.learn_fixtures import cli, exports_ok

pytestmark = pytest.mark.xdist_group("learn")


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(wf.OFFLINE_ENV, "1")
    return tmp_path / "keras"


def _bound(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()


def test_train_mobilenet_v2_from_cached_file_frozen_and_exports(tmp_path):
    """`kcv train --arch mobilenet_v2 --pretrained imagenet --freeze-backbone` trains from
    the cached notop file (keras.applications picks its 224-px file for other sizes, and
    the conv weights fit any size); the frozen features stay keras.applications'; the run
    exports to TFLite and ONNX, both verified, taking raw RGB."""
    ref = reference_model("mobilenet_v2", False, (32, 32, 3), alpha=0.35)
    randomize(ref)
    path = save_weight_file(ref, "mobilenet_v2", False, (224, 224, 3), {"alpha": 0.35})
    data = write_classification_folders(tmp_path / "data", n=4, size=32)
    code, out, err = cli(["train", "--arch", "mobilenet_v2", "--data", data, "--pretrained", "imagenet",
                          "--freeze-backbone", "--model-arg", "alpha=0.35", "--img-size", "32",
                          "--epochs", "1", "--batch-size", "4", "--out", tmp_path / "runs", "--quiet"])
    assert code == 0, err
    run = tmp_path / "runs" / "mobilenet_v2"
    model, config = runs.load_run(run)
    assert config["transfer"]["source"] == str(path) and config["pretrained"] == "imagenet"
    assert config["transfer"]["matched_by"] == "keras.applications ImageNet file"
    assert config["transfer"]["layers_transferred"] == len([w for w in ref.layers if w.weights])
    assert config["model_args"]["preprocessing"] == "tf"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    feats = keras.Model(model.inputs, model.get_layer("mobilenet_v2_out_relu").output)(x, training=False)
    _bound(feats, ref(preprocess("mobilenet_v2", x), training=False))
    exports_ok(run)


def test_train_without_cached_file_offline_is_one_line(tmp_path, monkeypatch, keras_home):
    data = write_classification_folders(tmp_path / "data", n=2, size=32)
    argv = ["train", "--arch", "mobilenet_v2", "--data", data, "--pretrained", "imagenet",
            "--freeze-backbone", "--img-size", "32", "--epochs", "1", "--out", tmp_path / "runs"]
    code, out, err = cli(argv)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in err
    assert str(keras_home / "models") in err and "kcv weights import" in err
    # Keras's own download code, failing without network: an origin nothing answers at
    monkeypatch.delenv(wf.OFFLINE_ENV)
    monkeypatch.setattr(wf, "KERAS_APPLICATIONS", "http://127.0.0.1:9/")
    code, out, err = cli(argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "could not be downloaded" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not any((keras_home / "models").glob("*.h5"))  # no partial download left


@pytest.mark.parametrize("name_kept", [True, False])
def test_keras_applications_vgg16_file_loaded_exactly_or_refused(tmp_path, name_kept):
    """A keras.applications VGG16 file as `--pretrained FILE`: under its own name it is
    recognised and loaded exactly (logits compared); renamed, it is refused in one line —
    never loaded by layer order into a network that normalises its input differently."""
    ref = reference_model("vgg16", True, (32, 32, 3))
    randomize(ref)
    saved = save_weight_file(ref, "vgg16", True)
    path = tmp_path / (saved.name if name_kept else "my_vgg16.h5")
    saved.rename(path)
    model = kcv.create_model("vgg16", 1000, (32, 32, 3), **({"preprocessing": "caffe"} if name_kept else {}))
    before = [np.asarray(w) for w in model.weights]
    if name_kept:
        report = transfer.load_pretrained(model, path, "vgg16", {"preprocessing": "caffe", "batch_norm": False})
        assert len(report.transferred) == report.total == 16 and not report.missing
        x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        _bound(model(x, training=False), ref(preprocess("vgg16", x), training=False))
    else:
        with pytest.raises(KcvError, match="does not match by layer order") as e:
            transfer.load_pretrained(model, path)
        assert "\n" not in str(e.value)
        assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.weights))


def test_kept_name_through_the_cli_and_wrong_arch_refused(tmp_path):
    ref = reference_model("densenet121", False, (32, 32, 3))
    path = save_weight_file(ref, "densenet121", False)
    data = write_classification_folders(tmp_path / "data", n=2, size=32)
    code, _, err = cli(["train", "--arch", "resnet50", "--data", data, "--pretrained", path,
                        "--img-size", "32", "--epochs", "1", "--out", tmp_path / "runs"])
    assert code == 2 and "keras.applications' weights of densenet121, not of resnet50" in err
    assert len(err.strip().splitlines()) == 1


def test_whole_model_source_outputs_compared(tmp_path):
    """A .keras source is run: same weights in a network with another input normalisation
    is refused, the same network is loaded and its outputs said to agree."""
    src = kcv.create_model("mobilenet_v2", 3, (32, 32, 3), alpha=0.35)
    src.save(tmp_path / "src.keras")
    same = kcv.create_model("mobilenet_v2", 5, (32, 32, 3), alpha=0.35)
    report = transfer.load_pretrained(same, tmp_path / "src.keras")
    assert report.compared.startswith("outputs of mobilenet_v2_out_bn equal")
    other = kcv.create_model("mobilenet_v2", 5, (32, 32, 3), alpha=0.35, preprocessing="torch")
    with pytest.raises(KcvError, match="compute different things"):
        transfer.load_pretrained(other, tmp_path / "src.keras")


def test_segmentation_encoders_equal_reference_taps(keras_home):
    """U-Net on resnet50 and DeepLab v3+ on mobilenet_v2 with ImageNet weights: the encoder's
    feature taps are keras.applications' intermediate outputs (DeepLab's atrous part, past
    stride 16, is dilated by design and has no keras.applications counterpart)."""
    size = 64
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")

    ref = reference_model("resnet50", False, (size, size, 3))
    randomize(ref)
    save_weight_file(ref, "resnet50", False)
    unet = kcv.create_model("unet", 3, (size, size, 3), weights="imagenet", backbone="resnet50",
                            base_filters=4)
    pairs = {"resnet50_stem_relu": "conv1_relu", "resnet50_stage2_block3_out": "conv2_block3_out",
             "resnet50_stage3_block4_out": "conv3_block4_out", "resnet50_stage4_block6_out": "conv4_block6_out",
             "resnet50_stage5_block3_out": "conv5_block3_out"}
    _taps_equal(unet, ref, pairs, x, "resnet50")

    ref = reference_model("mobilenet_v2", False, (size, size, 3))
    randomize(ref)
    save_weight_file(ref, "mobilenet_v2", False, (224, 224, 3), {"alpha": 1.0})
    deeplab = kcv.create_model("deeplabv3plus", 3, (size, size, 3), weights="imagenet",
                               backbone="mobilenet_v2", aspp_filters=8, decoder_filters=8)
    pairs = {"mobilenet_v2_block2_add": "block_2_add", "mobilenet_v2_block5_add": "block_5_add",
             "mobilenet_v2_block12_add": "block_12_add"}
    _taps_equal(deeplab, ref, pairs, x, "mobilenet_v2")


def _taps_equal(model, ref, pairs, x, arch):
    ours = keras.Model(model.inputs, [_output(model, n) for n in pairs])(x, training=False)
    theirs = keras.Model(ref.inputs, [ref.get_layer(n).output for n in pairs.values()])(
        preprocess(arch, x), training=False)
    for name, a, b in zip(pairs, ours, theirs):
        assert a.shape == b.shape, name
        _bound(a, b)


def _output(model, name):
    # the encoder's layers are shared with its standalone model: take their call in `model`
    from kcv import compat

    (call,) = compat.calls(model.get_layer(name), model)
    return call.outputs[0]
