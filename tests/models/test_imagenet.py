"""ImageNet weights: every model keras.applications publishes weights for computes, with
kcv.create_model(..., weights="imagenet"), what keras.applications computes with the same
file (random weights, BatchNorm statistics and biases included, written by the test in the
real file layout and name under a temporary KERAS_HOME; nothing touches the network)."""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np
import pytest

import kcv
from kcv import weights as wf
from kcv.errors import KcvError
from kcv.models import imagenet
from tests.models.imagenet_reference import (compare, preprocess, randomize, reference_model,
                                             save_weight_file)

# Input side per model: MobileNetV2 and EfficientNet-B0 at the 224 px (B0 through
# keras.applications' own weights="imagenet" code path); the others at 64 px, which still runs
# every layer and places every weight (the test files are written at that size: VGG's fc1
# fan-in follows it). At 224 px the 17 take ~15 min on 2 busy CPU cores (VGG alone ~1 min,
# 4 GB); benchmarks/imagenet_exactness.py measures them all at 224 px (RESULTS.md).
SIZES = {"vgg16": 64, "vgg19": 64, "resnet50": 64, "resnet101": 64, "resnet152": 64,
         "densenet121": 64, "densenet169": 64, "densenet201": 64, "mobilenet_v2": 224,
         "efficientnet_b0": 224, **{f"efficientnet_b{b}": 64 for b in range(1, 8)}}


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(wf.OFFLINE_ENV, "1")
    return tmp_path / "keras"


# One model per family and builder option runs by default (VGG, ResNet v1, DenseNet's stem,
# MobileNetV2 at 224 px, EfficientNet-B0 through keras.applications' own path and B1 through
# the emulated one); the deeper variants of the same builders cost ~15 min more on CI's 2
# cores, so KCV_TEST_ALL_IMAGENET=1 runs all 17 (the benchmark measures all 17 at 224 px).
REPRESENTATIVE = ("vgg16", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0", "efficientnet_b1")
ALL = os.environ.get("KCV_TEST_ALL_IMAGENET", "0") not in ("", "0")
# With KCV_TEST_ALL_IMAGENET=1 every model runs at the 224 px (EfficientNet B1–B7,
# which the issue lets use a smaller input, stay at 64 px): the full acceptance check.
if ALL:
    SIZES = {a: 64 if a.startswith("efficientnet_b") and a != "efficientnet_b0" else 224 for a in SIZES}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(SIZES))
def test_logits_equal_keras_applications(arch, capsys):
    if arch not in REPRESENTATIVE and not ALL:
        pytest.skip("a deeper variant of a builder covered above; KCV_TEST_ALL_IMAGENET=1 runs it")
    result = compare(arch, SIZES[arch])
    assert result["max_delta"] <= 1e-3 * result["max_logit"], result
    # a test file's MD5 is not the published one: used, and said so in one line
    if imagenet.weight_file(arch, True, {}, (SIZES[arch],) * 2 + (3,)).md5:
        err = capsys.readouterr().err
        assert "MD5 differs" in err and len([line for line in err.splitlines() if "MD5" in line]) == 1


def test_every_keras_applications_model_has_an_entry():
    assert sorted(imagenet.ENTRIES) == sorted(SIZES)
    assert all(kcv.get_spec(a).task == "classification" for a in imagenet.ENTRIES)


def test_missing_offline_is_one_line_naming_file_and_import(keras_home):
    with pytest.raises(KcvError) as e:
        kcv.create_model("mobilenet_v2", 5, (32, 32, 3), weights="imagenet", alpha=0.35)
    msg = str(e.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5" in msg
    assert str(keras_home / "models") in msg and "kcv weights import" in msg and "\n" not in msg


def test_file_that_does_not_fit_is_refused(keras_home):
    ref = reference_model("mobilenet_v2", False, (96, 96, 3), alpha=0.5)
    # saved under the alpha-0.35 name: same layer count, other shapes -> refused, nothing half-loaded
    save_weight_file(ref, "mobilenet_v2", False, (96, 96, 3), {"alpha": 0.35})
    with pytest.raises(KcvError, match="has shapes .* needs"):
        kcv.create_model("mobilenet_v2", 5, (96, 96, 3), weights="imagenet", alpha=0.35)


def test_conflicting_option_is_refused():
    with pytest.raises(KcvError, match="ImageNet weights need batch_norm=False"):
        kcv.create_model("vgg16", 5, (32, 32, 3), weights="imagenet", batch_norm=True)
    with pytest.raises(KcvError, match="no ImageNet weights"):
        kcv.create_model("resnet18", 5, (32, 32, 3), weights="imagenet")


def test_new_head_with_other_class_count_and_features_exact(keras_home):
    """Another class count: the notop file, the head new, the features keras.applications'."""
    shape = (64, 64, 3)
    ref = reference_model("resnet50", False, shape)
    randomize(ref)
    save_weight_file(ref, "resnet50", False)
    model = kcv.create_model("resnet50", 7, shape, weights="imagenet")
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    feats = keras.Model(model.inputs, model.get_layer("resnet50_stage5_block3_out").output)(x)
    want = ref(preprocess("resnet50", x))
    assert np.abs(np.asarray(feats) - np.asarray(want)).max() <= 1e-3 * np.abs(np.asarray(want)).max()


def test_weights_import_by_name_and_by_hash(tmp_path, keras_home):
    from kcv.models.imagenet import all_files

    ref = reference_model("mobilenet_v2", False, (96, 96, 3), alpha=0.35)
    path = save_weight_file(ref, "mobilenet_v2", False, (96, 96, 3), {"alpha": 0.35})
    moved = tmp_path / "download.h5"
    path.rename(moved)
    with pytest.raises(KcvError, match="neither the name nor the MD5"):
        wf.import_file(moved, all_files())
    named = tmp_path / path.name
    moved.rename(named)
    dest, file, status = wf.import_file(named, all_files())
    assert dest == path and dest.is_file() and status == "unpublished" and file.arch == "mobilenet_v2"
    junk = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(KcvError, match="not a readable"):
        wf.import_file(junk, all_files())
    assert not (keras_home / "models" / junk.name).exists()


def test_class_names_are_imagenets_1000():
    names = imagenet.class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[1] == "goldfish"
    assert names[207] == "golden retriever" and names[999] == "toilet tissue"


def test_h5_layout_is_keras_applications(keras_home):
    """The test files have the layout Keras 2 wrote (what keras.applications downloads)."""
    ref = reference_model("mobilenet_v2", False, (96, 96, 3), alpha=0.35)
    path = save_weight_file(ref, "mobilenet_v2", False, (96, 96, 3), {"alpha": 0.35})
    with h5py.File(path) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert "Conv1" in names


def test_predict_names_imagenet_classes(tmp_path):
    """A 1000-class ImageNet model saved by hand: `kcv predict` names ImageNet's classes."""
    from PIL import Image

    from kcv.runtime.predict import list_images, open_predictor, predict_images

    ref = reference_model("mobilenet_v2", True, (32, 32, 3), alpha=0.35)
    randomize(ref)
    save_weight_file(ref, "mobilenet_v2", True, (224, 224, 3), {"alpha": 0.35})
    model = kcv.create_model("mobilenet_v2", 1000, (32, 32, 3), weights="imagenet", alpha=0.35)
    model.save(tmp_path / "mnv2.keras")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    predictor = open_predictor(tmp_path / "mnv2.keras")
    (pred,) = predict_images(predictor, list_images([tmp_path / "grey.png"]), top_k=3)
    names = imagenet.class_names()
    top = int(np.argmax(pred.probs))
    assert pred.record["top_k"][0]["label"] == names[top] and len(pred.probs) == 1000
