"""Static int8 ONNX (``kcv export --onnx-int8``) for onnxruntime devices (Jetson, x86 boxes).

``onnxruntime.quantization.quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear
pairs around each op, which onnxruntime fuses into integer kernels and TensorRT reads as
explicit quantization): int8 weights per output channel, uint8 activations (U8S8, what
onnxruntime recommends for CPUs), MinMax ranges calibrated on the same images as the
TFLite int8 file. ``quant_pre_process`` first folds constants and fuses Conv+BN so the
quantizer sees one Conv per layer. The file keeps kcv's float NHWC raw-pixel input and
float probabilities; the quantization happens inside.

The quantizer names every new tensor after the float one it replaces, three times over
(``<tf2onnx name>_quantized``, ``_scale``, ``_zero_point``): in a small model those names
outweigh the int8 weights (a 30 k-parameter U-Net: 30 KB of names, 32 KB of weights), so
:func:`compact_names` renames internal tensors ``t0``, ``t1``, ... (graph inputs and
outputs keep theirs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


class _Images:
    """``CalibrationDataReader``: one float image per call, batch 1."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.name, self.images = input_name, iter(np.asarray(images, np.float32))

    def get_next(self):
        img = next(self.images, None)
        return None if img is None else {self.name: img[None]}


def compact_names(model) -> None:
    """Rename internal tensors to short names and drop node names and ``value_info``."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]


def quantize(fp32_path, out_path, calibration: np.ndarray) -> None:
    """Write the static QDQ int8 version of the ONNX file ``fp32_path`` to ``out_path``."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory(prefix="kcv-onnx-int8-") as work:
        pre, quant = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
        # skip_symbolic_shape: kcv's files have static spatial shapes; symbolic inference
        # would add a sympy dependency for nothing.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(quant), _Images(input_name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(str(quant))
    compact_names(model)
    onnx.save(model, str(out_path))
