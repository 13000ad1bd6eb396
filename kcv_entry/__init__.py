"""The ``kcv`` console script.

A top-level module rather than ``kcv.cli:main`` because importing anything under ``kcv``
first runs ``kcv/__init__.py``, which registers kcv's Keras layers, losses and models —
loading TensorFlow — so that ``import kcv`` is enough before ``keras.saving.load_model``.
The command line instead loads Keras only for the commands that need it
(:data:`kcv.cli.KERAS_FREE`), so ``kcv predict model.tflite`` and ``kcv benchmark
model.onnx`` start in a fraction of a second and run on a board with only numpy, Pillow,
click and LiteRT or onnxruntime installed (docs/deploy.md).
"""

import os


def main(argv=None):
    """Run the ``kcv`` command line (see :func:`kcv.cli.main`)."""
    os.environ["_KCV_DEFER_KERAS"] = "1"  # read (and removed) by kcv/__init__.py
    from kcv.cli import main as cli_main

    cli_main(argv)
