"""ONNX conversion (``Model.export(format="onnx")``, i.e. tf2onnx) and the onnxruntime runner.

Layout. Keras convolutions are NHWC, ONNX's are NCHW, so tf2onnx first wraps every conv
in a pair of Transposes (MobileNetV2: 100 Transpose nodes) and then its transpose
optimizer pushes them through element-wise ops and cancels adjacent pairs. What is left is
one Transpose after the input and, for segmentation, one before the output, and the file
keeps the NHWC raw-pixel contract of every kcv export (docs/design.md §6). ``inputs_as_nchw``
would remove the input Transpose too but change that contract, and measured no faster.
:func:`graph_summary` records the Transpose count in ``report.json``.

Runtime. onnxruntime's ``ORT_ENABLE_ALL`` (constant folding, Conv+BN+activation fusion,
its own transpose optimizer, NCHWc blocked layout on x86) is what makes it competitive:
at ``ORT_ENABLE_BASIC`` MobileNetV2 ran 2.2× LiteRT's latency, at ``ALL`` 1.0×. Its
intra-op thread pool spins between calls by default; on a small shared CPU those spinning
threads steal cycles from everything else (LiteRT timed right after a spinning session
went from 16 to 29 ms) and the p95 grows 5–20×, so kcv turns spinning off
(``benchmarks/onnx_layout.py``, figures in benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from kcv.errors import KcvError

OPSETS = range(13, 19)  # tf2onnx 1.17 converts to opsets up to 18; 13 is the oldest we test


def convert(model, path: Path, opset: int | None = None) -> None:
    """Write ``model`` (a called inference model) as ONNX with ``opset`` (tf2onnx default: 15)."""
    from kcv.export.tflite import quiet

    if opset is not None and opset not in OPSETS:
        raise KcvError(f"--opset {opset}: tf2onnx writes opsets {OPSETS.start}-{OPSETS.stop - 1}")
    with quiet():
        model.export(str(path), format="onnx", verbose=False, opset_version=opset)


def graph_summary(path) -> dict:
    """Opset, node count, op histogram and the number of Transpose nodes of an ONNX file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    ops = Counter(node.op_type for node in graph.graph.node)
    opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "nodes": sum(ops.values()), "transposes": ops.get("Transpose", 0),
            "ops": dict(ops.most_common())}


def session_options(num_threads: int = 2, spin: bool = False, level: str = "ORT_ENABLE_ALL"):
    """onnxruntime ``SessionOptions`` for single-image CPU inference (see module docstring)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 3  # warnings about unused initializers are noise here
    return opts


class OnnxRunner:
    """Runs an ``.onnx`` file in onnxruntime (CPU), one image at a time.

    Args:
        model: path of an ``.onnx`` file, or its bytes.
        num_threads: intra-op threads.
        spin: let idle pool threads spin (onnxruntime's default; off here, see above).
    """

    def __init__(self, model, num_threads: int = 2, spin: bool = False, level: str = "ORT_ENABLE_ALL"):
        import onnxruntime as ort

        source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
        self.session = ort.InferenceSession(source, session_options(num_threads, spin, level),
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name

    @property
    def input_shape(self) -> tuple:
        """``(H, W, C)`` of the input (``None`` for symbolic dimensions)."""
        return tuple(d if isinstance(d, int) else None for d in self.input.shape[1:])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of float RGB images, as float32."""
        outs = [self.session.run([self.output_name], {self.input.name: np.asarray(img, np.float32)[None]})[0][0]
                for img in images]
        return np.stack(outs).astype(np.float32)
