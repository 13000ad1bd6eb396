"""Shared fixtures of the export and predict tests: a small trained conv classifier run,
and that run and the session's U-Net run exported to every format.

Imported by ``tests/export/conftest.py`` and ``tests/cli/test_predict.py``; the work is
cached at module level so the two imports train and export only once per session.

LeNet-5 is dense-heavy (its int8 file is dominated by per-op overhead at 32 px), so the classification format tests
use a VGG-style conv classifier registered for the duration of the fixture only — the
registry-wide zoo test never sees it.
"""

from __future__ import annotations

import contextlib

import keras
import pytest

from kcv import registry
from kcv.layers import GlobalLSEPooling2D, conv_bn_act, normalized_input

TEST_ARCH = "kcv_test_cnn"


def build_test_cnn(num_classes, input_shape=(32, 32, 3), width=16, head="gap", r=1.0, last_dilation=1):
    """Three (conv-BN-ReLU ×2, max-pool) stages, global average pool, dense logits.

    ``head="lse"``: the last stage keeps its resolution (no pool; 8×8 at 32 px) and a 1×1
    conv gives one score map per class, pooled by global log-sum-exp with sharpness ``r``
    (Pinheiro & Collobert 2015) — a classifier whose Grad-CAM is its own class-score map
    (tests/viz/test_gradcam.py). ``last_dilation`` dilates the last stage's convs.
    """
    if head not in ("gap", "lse"):
        raise ValueError(f"head must be gap or lse, not {head!r}")
    inputs, x = normalized_input(input_shape)
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        d = last_dilation if i == 2 else 1
        x = conv_bn_act(x, filters, 3, dilation_rate=d, name=f"cnn_s{i}a")
        x = conv_bn_act(x, filters, 3, dilation_rate=d, name=f"cnn_s{i}b")
        if head == "gap" or i < 2:
            x = keras.layers.MaxPooling2D(2, name=f"cnn_s{i}_pool")(x)
    if head == "lse":
        maps = keras.layers.Conv2D(num_classes, 1, name="class_maps")(x)
        return keras.Model(inputs, GlobalLSEPooling2D(r, name="logits")(maps), name="cnn")
    x = keras.layers.GlobalAveragePooling2D(name="cnn_gap")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="cnn")


@contextlib.contextmanager
def registered_test_cnn():
    """Register :func:`build_test_cnn` as ``kcv_test_cnn`` inside the block only."""
    registry._ensure_loaded()
    registry.register(TEST_ARCH, task="classification", family="test", min_size=32,
                      train_defaults={"img_size": 32, "epochs": 8, "batch_size": 32, "lr": 3e-3})(build_test_cnn)
    try:
        yield TEST_ARCH
    finally:
        registry._REGISTRY.pop(TEST_ARCH, None)


_CACHE: dict = {}


def one_error(err: str) -> bool:
    """Exactly one ``error: ...`` line on stderr and no traceback (progress lines allowed)."""
    return sum(line.startswith("error: ") for line in err.splitlines()) == 1 and "Traceback" not in err


def _once(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _train_cnn(tmp_path_factory):
    from kcv.train import TrainConfig, train

    root = tmp_path_factory.mktemp("cnn_runs")
    with registered_test_cnn() as arch:
        # ~600 steps: a from-scratch CNN needs about 500 before it finds shape features
        # (val accuracy 0.91 here; with 100 steps it stayed at chance, which made the int8
        # accuracy-drop checks meaningless).
        return train(TrainConfig(arch=arch, data="shapes:1600", batch_size=16, epochs=6,
                                 augment="none", out=str(root), verbose=0))


def export_all(run_dir, *extra):
    """``kcv export RUN --all EXTRA...`` in-process; returns ``(exit code, stdout, stderr)``."""
    import io
    import sys
    from contextlib import redirect_stderr, redirect_stdout

    from kcv.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["export", str(run_dir), "--all", *extra])
            code = 0
        except SystemExit as e:
            code = e.code
    sys.stdout.flush()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory):
    """The test classifier trained for 8 epochs on 400 shapes images at 32 px (~10 s)."""
    return _once("cnn_run", lambda: _train_cnn(tmp_path_factory))


@pytest.fixture(scope="session")
def cnn_exported(cnn_run):
    """``cnn_run`` after ``kcv export --all``: ``(run_dir, (code, stdout, stderr))``."""
    return cnn_run, _once("cnn_exported", lambda: export_all(cnn_run))


@pytest.fixture(scope="session")
def unet_exported(unet_run):
    """The session U-Net run after ``kcv export --all``.

    That U-Net (2 epochs, 48 images) is near chance, mIoU below always-background, so its
    softmax is flat and int8 rounding flips ~5 % of its pixels: the export gate's default
    98 % agreement would (rightly) refuse the int8 file, so this fixture asks for 90 %.
    """
    return unet_run, _once("unet_exported", lambda: export_all(unet_run, "--min-agreement", "0.9"))
