"""Every registered architecture, parametrized over the registry (timm ``tests/test_models.py``).

One test per model builds it once at a tiny size, with the hyperparameters ``kcv train --arch
NAME`` uses (the registry's ``train_defaults``: e.g. FCN on ResNet-18 with 512-wide fc6/fc7,
not the paper's 134 M-parameter VGG-16 head, which the per-family files build and pin), and
checks: a training step on ``shapes`` without NaN, a ``.keras`` save/load round trip, Grad-CAM
on the loaded classifier (its target layer found on its own, a finite heat map), and a float32
TFLite export that LiteRT runs within 1e-4 of Keras. Per-family files pin the parameter counts
at 224 px.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kcv
from kcv.data import shapes
from kcv.export.tflite import convert_fp32
from kcv.models import inference_model
from kcv.registry import get_spec
from kcv.runtime.runners import LiteRTRunner
from kcv.viz.gradcam import GradCam

# Architectures that are not gradient-trained models go through their own tests.
NOT_FIT = {n for n in kcv.list_models() if not get_spec(n).capabilities.gradients}


@pytest.fixture(autouse=True)
def _free_graphs():
    """Drop each model's graphs and weights after its test: 30 models in one worker process
    otherwise grow it past 16 GB (the OOM killer ended xdist workers)."""
    yield
    import gc

    keras.backend.clear_session()
    gc.collect()


def tiny_size(spec) -> int:
    return max(32, spec.min_size)


@pytest.mark.parametrize("name", [n for n in kcv.list_models() if n not in NOT_FIT])
def test_train_step_save_load_and_tflite(name, tmp_path):
    spec = get_spec(name)
    size = tiny_size(spec)
    num_classes = 3 if spec.task == "classification" else 4
    x, y = shapes.make_split(4, size, spec.task)
    x = x.astype("float32")
    keras.utils.set_random_seed(0)
    model = kcv.create_model(name, num_classes, (size, size, 3), **spec.train_defaults.get("model_args", {}))
    # Adam, kcv's default: its step is bounded by the learning rate. With SGD, BatchNorm over
    # a batch of 2 at the 1×1 maps of a 32 px input gives gradients of 1e7–1e23 (measured on
    # DenseNet/EfficientNet, keras.applications' included), and one step overflows the weights.
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # one eager step: tracing a 150-layer train graph costs ~30 s
    # train_on_batch: exactly one step, without fit's per-call setup (tens of seconds for
    # the deepest models on CPU).
    loss = model.train_on_batch(x[:2], y[:2].astype("int32"))
    assert np.isfinite(loss), f"{name}: loss is not finite"

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x[:1], training=False)),
                               np.asarray(model(x[:1], training=False)), atol=1e-4, rtol=1e-4)
    if spec.task == "classification":
        check_gradcam(name, loaded, x[:2])

    infer = inference_model(model)
    tfl = tmp_path / "m.tflite"
    convert_fp32(infer, tfl)
    got = LiteRTRunner(tfl)(x[:2])
    want = np.asarray(infer(x[:2], training=False))
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-4, f"{name}: TFLite max |Δprob| {np.max(np.abs(got - want)):.2e}"


def check_gradcam(name, model, x):
    """Grad-CAM of a loaded classifier: a rank-4 target found automatically, finite heat in [0, 1]."""
    cam = GradCam(model)
    heat, classes, probs = cam(x)
    assert heat.shape == (len(x), *cam.map_shape), f"{name}: heat {heat.shape} vs map {cam.map_shape}"
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1, f"{name}: Grad-CAM heat not in [0, 1]"
    assert np.isfinite(probs).all() and classes.shape == (len(x),)
