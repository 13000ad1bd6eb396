"""ONNX conversion (``Model.export(format="onnx")``, i.e. tf2onnx).

Layout. Keras convolutions are NHWC, ONNX's are NCHW, so tf2onnx first wraps every conv
in a pair of Transposes (MobileNetV2: 100 Transpose nodes) and then its transpose
optimizer pushes them through element-wise ops and cancels adjacent pairs. What is left is
one Transpose after the input and, for segmentation, one before the output, and the file
keeps the NHWC raw-pixel contract of every kcv export (docs/design.md §6). ``inputs_as_nchw``
would remove the input Transpose too but change that contract, and measured no faster.
:func:`graph_summary` records the Transpose count in ``report.json``.

The onnxruntime runner and its session options are in :mod:`kcv.runtime.runners`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

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
