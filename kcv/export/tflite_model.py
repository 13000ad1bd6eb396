"""Editing a ``.tflite`` flatbuffer after conversion: the pixel input of int8 files and
the ``metadata`` entries that carry TFLite Metadata.

Uses the object API of the TFLite schema that ships with ``ai_edge_litert``
(``schema_py_generated``), so it needs neither TensorFlow nor MediaPipe. Unpacking and
repacking the whole model is what TFLite Support's own ``MetadataPopulator`` does; it
costs a fraction of a second for the models kcv trains.
"""

from __future__ import annotations

import numpy as np

TFLITE_FILE_IDENTIFIER = b"TFL3"


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def unpack(data: bytes):
    """The ``ModelT`` object of a ``.tflite`` flatbuffer (trailing zip archives ignored)."""
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model) -> bytes:
    """Serialise a ``ModelT`` back into a ``.tflite`` flatbuffer."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def io_types(data: bytes) -> tuple[str, str]:
    """``(input dtype, output dtype)`` names of the first subgraph, e.g. ``("uint8", "float32")``."""
    schema = _schema()
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    sub = schema.Model.GetRootAs(bytearray(data), 0).Subgraphs(0)
    return names[sub.Tensors(sub.Inputs(0)).Type()], names[sub.Tensors(sub.Outputs(0)).Type()]


def set_pixel_input(data: bytes) -> bytes:
    """Give a uint8 model input the quantisation of raw pixels: scale 1, zero point 0.

    kcv models take raw [0, 255] RGB values, which *are* uint8 numbers. The converter
    instead derives the uint8 input's scale from the calibrated int8 range (e.g. 0.996,
    zero point 2), so a caller would have to requantise every pixel and lose up to half a
    step. The converter's first op is a QUANTIZE (uint8 → int8) that requantises from
    whatever scale its input declares, so declaring the exact one is all it takes.
    """
    schema = _schema()
    model = unpack(data)
    sub = model.subgraphs[0]
    tensor = sub.tensors[sub.inputs[0]]
    if tensor.type != schema.TensorType.UINT8:
        raise ValueError(f"input tensor is {tensor.type}, not uint8")
    consumers = [op for op in sub.operators if sub.inputs[0] in list(op.inputs)]
    quantize = model.operatorCodes
    for op in consumers:
        code = quantize[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.QUANTIZE:
            # Another op reading the uint8 tensor directly would take its scale literally.
            raise ValueError("uint8 input feeds an op other than QUANTIZE")
    q = tensor.quantization or schema.QuantizationParametersT()
    q.scale, q.zeroPoint = [1.0], [0]
    q.min = q.max = None
    tensor.quantization = q
    return pack(model)


def with_metadata(data: bytes, name: str, payload: bytes) -> bytes:
    """``data`` with ``payload`` stored in a buffer referenced by ``metadata[name]``
    (replacing an entry of that name); the model flatbuffer only, without any zip tail."""
    schema = _schema()
    model = unpack(data)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, np.uint8)
    entries = model.metadata or []
    existing = next((m for m in entries if m.name.decode() == name), None)
    if existing is not None:
        model.buffers[existing.buffer] = buffer
    else:
        model.buffers = (model.buffers or []) + [buffer]
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata = entries + [entry]
    return pack(model)


def read_metadata(data: bytes, name: str) -> bytes | None:
    """The bytes stored under ``metadata[name]``, or ``None``."""
    model = _schema().Model.GetRootAs(bytearray(data), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == name:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None
