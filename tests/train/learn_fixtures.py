"""Shared runs of the transfer / distillation / self-training tests (tiny: 32 px, 1 epoch).

Imported by the test modules; the work is cached at module level so the modules share one
teacher run per session. The architecture is the export tests' small conv classifier
(``kcv_test_cnn``: three conv-BN stages, GAP, ``logits``), registered while in use.
"""

from __future__ import annotations

import contextlib
import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from tests.export.fixtures import registered_test_cnn

_CACHE: dict = {}


@contextlib.contextmanager
def learn_cnn():
    """``kcv_test_cnn`` registered inside the block (a no-op if it already is)."""
    from kcv import registry

    registry._ensure_loaded()
    if "kcv_test_cnn" in registry._REGISTRY:
        yield "kcv_test_cnn"
        return
    with registered_test_cnn() as arch:
        yield arch


def tiny(arch: str, root, **kw):
    """A 1-epoch, 32-px ``TrainConfig`` on 64 shapes images (2 steps of 32)."""
    from kcv.train import TrainConfig

    base = dict(arch=arch, data="shapes:64", epochs=1, batch_size=32, img_size=32, augment="none",
                out=str(root), verbose=0)
    return TrainConfig(**{**base, **kw})


def _train_teacher(tmp_path_factory):
    from kcv.train import train

    with learn_cnn() as arch:
        return train(tiny(arch, tmp_path_factory.mktemp("learn_runs"), name="teacher",
                          model_args={"width": 8}))


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory):
    """``kcv_test_cnn`` (width 8) trained 1 epoch on shapes:64 at 32 px."""
    if "teacher" not in _CACHE:
        _CACHE["teacher"] = _train_teacher(tmp_path_factory)
    return _CACHE["teacher"]


@pytest.fixture(scope="session")
def seg_teacher_run(tmp_path_factory):
    """A tiny U-Net saved as a run directory without training: distillation's plumbing does
    not care whether the teacher learnt anything, and this costs a second, not a fit."""
    if "seg_teacher" not in _CACHE:
        import keras

        import kcv
        from kcv import runs
        from kcv.contracts import CONFIG_FILE, MODEL_FILE
        from kcv.data import shapes

        keras.utils.set_random_seed(0)
        model = kcv.create_model("unet", 4, (32, 32, 3), base_filters=4, depth=2)
        run = tmp_path_factory.mktemp("learn_seg") / "unet"
        runs.save_model(model, run / MODEL_FILE)
        runs.write_json(run / CONFIG_FILE, {"arch": "unet", "task": "segmentation", "img_size": 32,
                                                 "num_classes": 4, "class_names": shapes.class_names("segmentation")})
        _CACHE["seg_teacher"] = run
    return _CACHE["seg_teacher"]


def cli(argv):
    """``kcv ARGV`` in-process; ``(exit code, stdout, stderr)``."""
    from kcv.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code
    sys.stdout.flush()
    return code, out.getvalue(), err.getvalue()


def exports_ok(run_dir) -> None:
    """``kcv export RUN --tflite --onnx`` exits 0 and both files pass verification."""
    code, out, err = cli(["export", run_dir, "--tflite", "--onnx"])
    assert code == 0, err
    assert (run_dir / "exports" / "model_fp32.tflite").is_file()
    assert (run_dir / "exports" / "model.onnx").is_file()
    rows = [line for line in out.splitlines() if line.startswith(("tflite", "onnx"))]
    assert len(rows) == 2 and all(line.rstrip().endswith("ok") for line in rows), out
