"""TFLite conversion and the LiteRT runner used to verify and benchmark ``.tflite`` files."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np


def convert_fp32(model, path: Path, **_) -> None:
    """Write ``model`` as a float32 ``.tflite`` file with built-in ops only."""
    # Model.export prints "Saved artifact at ..." on stdout; the CLI prints its own table.
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(str(path), format="litert", verbose=False)


class LiteRTRunner:
    """Runs a ``.tflite`` file one image at a time in the LiteRT interpreter (XNNPACK)."""

    def __init__(self, path, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        from kcv._quiet import silenced_fd2

        with silenced_fd2():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on every load
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of float RGB images, as float32."""
        outs = []
        for img in images:
            self.interpreter.set_tensor(self.input["index"], self._quantize(img[None]))
            self.interpreter.invoke()
            outs.append(self._dequantize(self.interpreter.get_tensor(self.output["index"]))[0])
        return np.stack(outs)

    def _quantize(self, x):
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        return x.astype(dtype)

    def _dequantize(self, y):
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = self.output["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)
