"""Full-integer quantization triage: which layers lose the most, and keeping them in float.

Uses TensorFlow's quantization debugger (``tf.lite.experimental.QuantizationDebugger``,
TF guide "Inspecting quantization errors with quantization debugger"). The debugger builds
an instrumented int8 model in which every quantized op is followed by a ``NumericVerify``
op that also runs the float op on the same (dequantized) input; the per-layer statistic
used here is the guide's ``rmse / scale``: the RMS error of the layer's output measured in
quantization steps. Pure rounding noise gives 1/sqrt(12) ≈ 0.29; the guide flags layers
above 0.7.

"Keep in float" is the debugger's selective quantization: the named output tensors go on
``denylisted_nodes`` and those ops stay float32 between a DEQUANTIZE and a QUANTIZE,
while the file keeps int8 input and output (``fully_quantize=True``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from kcv.export import tflite

SUSPICIOUS_RATIO = 0.7  # the TF guide's threshold on rmse/scale
DEBUG_IMAGES = 32  # validation images the debugger runs to collect the statistics


@dataclass
class LayerError:
    """Quantization error of one op's output."""

    tensor: str  # TFLite tensor name (what denylisted_nodes takes)
    op: str  # TFLite op, e.g. CONV_2D
    layer: str  # Keras layer name(s) fused into this op
    rmse_scale: float  # RMS error in quantization steps
    max_abs_error: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def keras_layers(tensor_name: str) -> str:
    """Keras layer names inside a fused TFLite tensor name.

    ``"model/c0_relu_1/Relu;model/c0_bn_1/batchnorm/add_1;model/c0_conv_1/convolution"``
    → ``"c0_relu+c0_bn+c0_conv"``. The ``_1`` suffix is the trace's name scope.
    """
    names = []
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        name = pieces[1] if len(pieces) > 2 else pieces[0]
        names.append(re.sub(r"_\d+$", "", name))
    return "+".join(dict.fromkeys(names))


class Triage:
    """A calibrated int8 model with its per-layer quantization errors.

    Args:
        saved_model_dir: the staged SavedModel.
        calibration: float images used for calibration (training images).
        debug_images: float images the per-layer errors are measured on. Held-out images
            (kcv passes validation images) also reveal activations that the calibration
            set did not cover, which are clipped; calibration images would hide that.
    """

    def __init__(self, saved_model_dir, calibration: np.ndarray, debug_images: np.ndarray,
                 int8_io: str = "uint8"):
        import tensorflow as tf

        self.int8_io = int8_io
        conv = tflite.make_converter(saved_model_dir, "int8", calibration, int8_io)
        debug_set = tflite.representative_dataset(debug_images[:DEBUG_IMAGES])
        with tflite.quiet():
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=debug_set)
            self.debugger.run()
        self.errors = self._layer_errors()

    def _layer_errors(self) -> list[LayerError]:
        dump = io.StringIO()
        self.debugger.layer_statistics_dump(dump)
        rows = []
        for row in csv.DictReader(io.StringIO(dump.getvalue())):
            scale = float(row["scale"])
            rmse = float(np.sqrt(float(row["mean_squared_error"])))
            rows.append(LayerError(row["tensor_name"], row["op_name"], keras_layers(row["tensor_name"]),
                                   rmse / scale if scale > 0 else 0.0, float(row["max_abs_error"])))
        return sorted(rows, key=lambda e: -e.rmse_scale)

    def worst(self, n: int = 5) -> list[LayerError]:
        """The ``n`` layers with the largest rmse/scale."""
        return self.errors[:n]

    def quantize(self, keep_float=()) -> bytes:
        """A full-int8 model (uint8 input, ``int8_io`` output, as :func:`tflite.convert`)
        with the tensors in ``keep_float`` computed in float."""
        # What debugger.get_nondebug_quantized_model() runs, called directly: going through
        # the public `debugger.options` setter would rebuild the instrumented model on every
        # call and fails outright once every layer is denylisted (no NumericVerify left).
        from tensorflow.lite.python import convert as tfl_convert

        import tensorflow as tf
        from tensorflow.lite.python.util import modify_model_io_type

        with tflite.quiet():
            # Float I/O around the int8 body, then the converter's own I/O rewrite (MLIR's
            # fully_quantize writes int8 input and output, not uint8). A tensor next to the
            # input or output that is kept in float keeps that side float.
            data = tfl_convert.mlir_quantize(self.debugger.calibrated_model, fully_quantize=False,
                                             denylisted_nodes=list(keep_float) or None)
            data = modify_model_io_type(data, tf.uint8, tflite.io_dtype(self.int8_io))
        return tflite.finish_int8(bytes(data))

    def keep_float_auto(self, drop_of: Callable[[bytes], float], max_drop: float):
        """Keep the worst 1, 2, 4, ... suspicious layers (rmse/scale above
        :data:`SUSPICIOUS_RATIO`; at least the worst one) in float until the metric drop is
        within ``max_drop`` points.

        Layers at rounding-noise level are never kept: when the suspicious ones do not
        recover the metric, the problem is elsewhere (usually calibration images that do
        not look like the deployment images), and a silently all-float "int8" file would
        hide it.

        Args:
            drop_of: ``bytes -> metric drop in points`` on the validation images.

        Returns:
            ``(model bytes, kept LayerErrors, steps)`` of the first candidate within the
            limit, else of the candidate with the smallest drop; ``steps`` lists
            ``{"kept": k, "drop_points": d}`` for every candidate tried.
        """
        candidates = [e for e in self.errors if e.rmse_scale > SUSPICIOUS_RATIO] or self.errors[:1]
        best, steps, k = None, [], 1
        while True:
            kept = candidates[:k]
            data = self.quantize([e.tensor for e in kept])
            drop = float(drop_of(data))
            steps.append({"kept": len(kept), "drop_points": round(drop, 3)})
            if best is None or drop < best[2]:
                best = (data, kept, drop)
            if drop <= max_drop or k >= len(candidates):
                data, kept, _ = (data, kept, drop) if drop <= max_drop else best
                return data, kept, steps
            k = min(2 * k, len(candidates))
