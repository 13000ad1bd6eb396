"""keras.applications reference networks with random weights, saved where kcv looks for
ImageNet weights (shared by tests/models/test_imagenet.py and benchmarks/imagenet_exactness.py).

Every weight is random, BatchNorm moving statistics and biases included: default-initialised
BatchNorm (mean 0, variance 1, γ 1, β 0) is an identity, and zero biases hide a missing bias,
so only random values catch a padding, epsilon or bias difference.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np

from kcv.models import imagenet

# kcv name -> (keras.applications constructor, its preprocess_input module)
REFERENCE = {
    "vgg16": ("VGG16", "vgg16"), "vgg19": ("VGG19", "vgg19"),
    "resnet50": ("ResNet50", "resnet"), "resnet101": ("ResNet101", "resnet"),
    "resnet152": ("ResNet152", "resnet"),
    "densenet121": ("DenseNet121", "densenet"), "densenet169": ("DenseNet169", "densenet"),
    "densenet201": ("DenseNet201", "densenet"), "mobilenet_v2": ("MobileNetV2", "mobilenet_v2"),
    **{f"efficientnet_b{b}": (f"EfficientNetB{b}", "efficientnet") for b in range(8)},
}


def randomize(model, seed: int = 0) -> None:
    """Random values for every weight: kernels keep Keras' random initialisation; BN γ, β,
    moving mean and (positive) moving variance, biases and Normalization statistics are drawn."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape
            layer.set_weights([rng.uniform(0.8, 1.2, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)])
        elif isinstance(layer, keras.layers.Normalization):
            layer.set_weights([rng.uniform(0.3, 0.6, 3), rng.uniform(0.03, 0.08, 3), np.array(7)])
            layer.finalize_state()
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape))


def reference_model(arch: str, top: bool, input_shape, **kwargs):
    constructor, _ = REFERENCE[arch]
    return getattr(keras.applications, constructor)(
        weights=None, include_top=top, input_shape=tuple(input_shape),
        **({"classifier_activation": None} if top else {}), **kwargs)


def save_weight_file(model, arch: str, top: bool, input_shape=(224, 224, 3), model_args=None) -> Path:
    """Save ``model``'s weights in keras.applications' Keras 2 ``.h5`` layout under the name
    keras.applications downloads, in ``$KERAS_HOME/models``."""
    from keras.src.legacy.saving import legacy_h5_format

    file = imagenet.weight_file(arch, top, model_args or {}, input_shape)
    path = imagenet.wf.cache_dir() / file.name
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def preprocess(arch: str, images: np.ndarray) -> np.ndarray:
    """keras.applications' own ``preprocess_input`` for ``arch`` (on a copy: it works in place)."""
    _, module = REFERENCE[arch]
    return np.asarray(getattr(keras.applications, module).preprocess_input(images.copy()))


def imagenet_reference(arch: str, path: Path, top: bool, input_shape, monkeypatch=None, **kwargs):
    """EfficientNet as keras.applications builds it with ``weights="imagenet"``, reading
    ``path`` (its download function patched to return the file): with ``weights=None``
    keras.applications leaves out the extra ×1/√std rescaling it applies to its ImageNet
    weights (keras-team/keras#49930). keras.applications allows this only at the variant's
    own resolution when ``top``."""
    import keras.src.applications.efficientnet as ka_efficientnet

    constructor, _ = REFERENCE[arch]
    patch = monkeypatch or _Patch()
    patch.setattr(ka_efficientnet.file_utils, "get_file", lambda *a, **k: str(path))
    try:
        return getattr(keras.applications, constructor)(
            weights="imagenet", include_top=top, input_shape=tuple(input_shape),
            **({"classifier_activation": None} if top else {}), **kwargs)
    finally:
        patch.undo()


class _Patch:
    def __init__(self):
        self.saved = []

    def setattr(self, obj, name, value):
        self.saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def undo(self):
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)
        self.saved.clear()


def with_imagenet_rescaling(model) -> None:
    """Make a ``weights=None`` EfficientNet compute what keras.applications' ``weights=
    "imagenet"`` network computes with the same weights: that network multiplies the
    Normalization output (x − m)/√v by 1/√std per channel, which is a Normalization with
    variance v·std (used where keras.applications refuses the "imagenet" path: a top
    model away from the variant's own resolution)."""
    from kcv.layers.preprocess import TORCH_STD

    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    mean, var, count = norm.get_weights()
    norm.set_weights([mean, var * np.asarray(TORCH_STD, var.dtype), count])
    norm.finalize_state()


def compare(arch: str, size: int = 224, seed: int = 0, batch: int = 2) -> dict:
    """Build, randomise and save ``arch``'s reference, load ``kcv.create_model(arch, 1000,
    weights="imagenet")`` and compare logits on raw [0, 255] RGB images. ``$KERAS_HOME`` must
    point at a scratch directory."""
    import time

    import kcv

    shape = (size, size, 3)
    ref = reference_model(arch, True, shape)
    randomize(ref, seed)
    path = save_weight_file(ref, arch, True, shape)
    if arch == "efficientnet_b0" and size == 224:
        ref = imagenet_reference(arch, path, True, shape)
    elif arch.startswith("efficientnet"):
        with_imagenet_rescaling(ref)
    t0 = time.perf_counter()
    ours = kcv.create_model(arch, 1000, shape, weights="imagenet")
    load_s = time.perf_counter() - t0
    images = np.random.default_rng(seed + 1).uniform(0, 255, (batch, *shape)).astype("float32")
    want = np.asarray(ref(preprocess(arch, images), training=False))
    got = np.asarray(ours(images, training=False))
    delta = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    return {"arch": arch, "size": size, "max_delta": delta, "max_logit": scale,
            "relative": delta / scale, "build_and_load_s": load_s}
