"""Load TensorFlow without its start-up chatter.

TensorFlow's C++ runtime writes INFO lines to fd 2 before its logging reads
``TF_CPP_MIN_LOG_LEVEL`` ("oneDNN custom operations are on", "Could not find cuda
drivers"), and an ERROR line when the CUDA probe fails on a CPU-only machine. They tell a
user nothing actionable, so kcv loads TensorFlow with fd 2 pointed at /dev/null. Python
exceptions are unaffected; ``TF_CPP_MIN_LOG_LEVEL=0`` keeps every line.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_fd2(enabled: bool = True):
    """Redirect the process's fd 2 to /dev/null inside the block."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (some embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_tensorflow() -> None:
    """Import TensorFlow and probe devices once, quietly unless the user asked for logs."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with silenced_fd2(os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"):
        import tensorflow as tf

        tf.config.list_physical_devices()  # the failing CUDA probe logs here, not at import
