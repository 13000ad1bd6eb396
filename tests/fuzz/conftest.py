"""Helpers of the hostile-input suite (issue 17): the promise every case must keep.

A command given damaged data or extreme flags either succeeds (exit 0) or prints exactly
one ``error: ...`` line naming the culprit and exits 2 — never a traceback, never a hang,
never a run directory without a trained epoch.
"""

from __future__ import annotations

import contextlib
import signal

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

CASE_SECONDS = 120  # a case slower than this is a hang (the slowest real case takes ~10 s)


@contextlib.contextmanager
def time_limit(seconds=CASE_SECONDS):
    """Fail the case instead of hanging the suite (SIGALRM interrupts the main thread)."""
    def hang(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def kcv(argv, capsys, seconds=CASE_SECONDS):
    """``run_cli`` under :func:`time_limit`; ``(exit code, stdout, stderr)``."""
    with time_limit(seconds):
        return run_cli([str(a) for a in argv], capsys)


def assert_promise(code, err, names=(), ok=(0, 2)):
    """Exit 0, or exit 2 with one ``error:`` line (the last) that names one of ``names``."""
    assert "Traceback" not in err, err
    assert code in ok, f"exit {code}: {err}"
    if code == 0:
        return None
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    if names:
        assert any(str(n) in errors[0] for n in names), f"{errors[0]!r} names none of {names}"
    return errors[0]


def assert_no_untrained_runs(root):
    """Every run directory under ``root`` holds a trained epoch."""
    from pathlib import Path

    root = Path(root)
    if root.is_dir():
        bare = [d.name for d in root.iterdir() if d.is_dir() and not any(d.rglob("last.keras"))]
        assert not bare, f"run directories without a trained epoch: {bare}"


def save_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def tiny_rgb(h=24, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def cls_run(tmp_path_factory):
    """A LeNet-5 trained for 1 epoch on 16 shapes images at 32 px."""
    from kcv.train import TrainConfig, train

    root = tmp_path_factory.mktemp("fuzz_runs")
    return train(TrainConfig(arch="lenet5", data="shapes:16", epochs=1, img_size=32, batch_size=8,
                             out=str(root), verbose=0))
