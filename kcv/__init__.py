"""kcv — a Keras 3 computer-vision workbench.

Classic CNNs for classification and segmentation, trained with ``model.fit`` and exported
to verified TFLite and ONNX files. ``import kcv`` registers every architecture and custom
layer, so ``keras.saving.load_model("saved_models/unet/model.keras")`` works after it.
"""

__version__ = "0.1.0"

from kcv._quiet import load_tensorflow  # noqa: E402

load_tensorflow()

from kcv.errors import KcvError  # noqa: E402
from kcv.registry import create_model, get_spec, list_models  # noqa: E402
from kcv.runs import Run, load_run, open_run  # noqa: E402

import kcv.losses  # noqa: E402,F401  (custom losses, metrics and layers must be registered
import kcv.metrics  # noqa: E402,F401  before any model.keras is loaded)
import kcv.models  # noqa: E402,F401  (registers architectures)

__all__ = ["create_model", "list_models", "get_spec", "load_run", "open_run", "Run", "KcvError", "__version__"]
