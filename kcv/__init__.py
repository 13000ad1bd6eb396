"""kcv — a Keras 3 computer-vision workbench.

Classic CNNs for classification and segmentation, trained with ``model.fit`` and exported
to verified TFLite and ONNX files. ``import kcv`` registers every architecture and custom
layer, so ``keras.saving.load_model("saved_models/unet/model.keras")`` works after it.

Two exceptions leave Keras unloaded until it is needed: the ``kcv`` console script
(:mod:`kcv_entry`), and an install without TensorFlow (docs/deploy.md), where only the
TensorFlow-free parts — ``kcv predict`` / ``kcv benchmark`` on ``.tflite`` and ``.onnx``
files, :mod:`kcv.runtime` — can run.
"""

import importlib.util
import os
import sys

__version__ = "0.1.0"

from kcv.errors import KcvError  # noqa: E402
# Light modules: the registry loads the architectures (Keras) when first asked.
from kcv.registry import create_model, get_spec, list_models  # noqa: E402
from kcv.runs import Run, load_run, open_run  # noqa: E402

__all__ = ["create_model", "list_models", "get_spec", "load_run", "open_run", "Run", "load_keras", "KcvError",
           "__version__"]


def keras_installed() -> bool:
    """Whether TensorFlow and Keras can be imported (not the TensorFlow-free install)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))
    except (ImportError, ValueError):  # a blocked or broken finder
        return False


def load_keras(needed_by: str = "this") -> None:
    """Load TensorFlow quietly and register kcv's custom layers, losses, metrics and
    architectures (idempotent); they must be registered before any ``model.keras`` loads.

    Raises:
        KcvError: naming ``needed_by`` on an install without TensorFlow.
    """
    from kcv._quiet import load_tensorflow

    if "keras" not in sys.modules and not keras_installed():
        raise KcvError(f"{needed_by} needs TensorFlow and Keras, which this TensorFlow-free install lacks: "
                       f"pip install kcv (docs/deploy.md)")

    load_tensorflow()
    import kcv.losses  # noqa: F401
    import kcv.metrics  # noqa: F401
    import kcv.models  # noqa: F401  (registers architectures and layers)


if os.environ.pop("_KCV_DEFER_KERAS", None) is None and keras_installed():
    try:
        load_keras()
    except ImportError as e:
        if e.name not in ("tensorflow", "keras"):  # a bug in kcv, not a missing framework
            raise
