"""TFLite Metadata: what MediaPipe Tasks, the Android Task Library and ML Kit read from a
``.tflite`` file (``metadata_schema.fbs``, github.com/google/mediapipe
``mediapipe/tasks/metadata/metadata_schema.fbs``).

A ``ModelMetadata`` flatbuffer (file identifier ``M001``) is stored in the model's
``metadata`` vector under the name ``TFLITE_METADATA``; associated files (``labels.txt``)
are appended to the ``.tflite`` file as an uncompressed zip archive, which LiteRT ignores
and the metadata extractors open. kcv writes:

* name, description, version, author; one subgraph;
* input: RGB ``ImageProperties``, ``NormalizationOptions`` mean 0 / std 1 (kcv models take
  raw [0, 255] pixels and normalise inside the graph, so the consumer's preprocessing is
  the identity) and value stats [0, 255];
* output: classification — ``FeatureProperties`` and ``labels.txt`` as
  ``TENSOR_AXIS_LABELS``; segmentation — a GRAYSCALE ``ImageProperties`` mask with
  ``labels.txt``, the label map ``ImageSegmenter`` reads.

Why our own writer: MediaPipe's ``metadata_writers`` fail at import in mediapipe 1.2.3
(``_pywrap_metadata_version`` missing) and importing any of ``mediapipe`` loads TensorFlow;
``tflite-support`` has had no release since 2023. The schema is small and stable, so the
tables are built here with ``flatbuffers`` directly (field slots as in the ``.fbs``: a
union takes two, its type then its value), and read back by :func:`read` to check them.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import flatbuffers
from flatbuffers import table as fb_table

from kcv.export import tflite_model

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
# Oldest metadata parser that understands every field written here (metadata_version.cc:
# nothing beyond the 1.0.0 schema is used: no custom metadata, tensor groups or tokenizers).
MIN_PARSER_VERSION = "1.0.0"

# Enum values of metadata_schema.fbs.
_RGB, _GRAYSCALE = 1, 2
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1
_TENSOR_AXIS_LABELS = 2


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata says about a kcv model."""

    name: str
    task: str  # classification | segmentation
    labels: tuple
    img_size: tuple  # (H, W)
    description: str = ""
    version: str = ""
    author: str = "kcv"
    mean: tuple = (0.0,)
    std: tuple = (1.0,)


def describe_run(cfg: dict, variant: str) -> ModelInfo:
    """The :class:`ModelInfo` of an export of the run described by ``cfg``."""
    from kcv import __version__

    size = cfg["img_size"]
    what = "Image classifier" if cfg["task"] == "classification" else "Semantic segmentation"
    desc = (f"{what} ({cfg['arch']}, {len(cfg['class_names'])} classes, {size}x{size} RGB input in "
            f"[0, 255]; {variant} TFLite). Trained and exported with kcv.")
    return ModelInfo(name=cfg["arch"], task=cfg["task"], labels=tuple(cfg["class_names"]),
                     img_size=(size, size), description=desc, version=f"kcv {__version__}",
                     author="kcv (Keras 3 computer-vision workbench)")


# --- writing ---------------------------------------------------------------------------------

def _table(b: flatbuffers.Builder, nslots: int, fields) -> int:
    """One table from ``(slot, kind, value)``; ``kind``: ``off`` (offset), ``u8``, ``i8``,
    ``i32`` or ``u32``. ``None`` values are left out (the reader's default)."""
    add = {"off": b.PrependUOffsetTRelativeSlot, "u8": b.PrependUint8Slot, "i8": b.PrependInt8Slot,
           "i32": b.PrependInt32Slot, "u32": b.PrependUint32Slot}
    b.StartObject(nslots)
    for slot, kind, value in fields:
        if value is not None:
            add[kind](slot, value, 0)
    return b.EndObject()


def _vector(b: flatbuffers.Builder, items, kind: str = "off") -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item) if kind == "off" else b.PrependFloat32(item)
    return b.EndVector()


def _labels_file(b: flatbuffers.Builder) -> int:
    name, desc = b.CreateString(LABELS_FILE), b.CreateString("Class names, one per line, in output order.")
    return _table(b, 5, [(0, "off", name), (1, "off", desc), (2, "i8", _TENSOR_AXIS_LABELS)])


def _input_tensor(b: flatbuffers.Builder, info: ModelInfo) -> int:
    name = b.CreateString("image")
    desc = b.CreateString(f"RGB image, {info.img_size[0]}x{info.img_size[1]}, raw pixel values 0-255.")
    size = _table(b, 2, [(0, "u32", info.img_size[1]), (1, "u32", info.img_size[0])])
    props = _table(b, 2, [(0, "i8", _RGB), (1, "off", size)])
    content = _table(b, 3, [(0, "u8", _IMAGE_PROPERTIES), (1, "off", props)])
    norm = _table(b, 2, [(0, "off", _vector(b, list(info.mean), "f32")), (1, "off", _vector(b, list(info.std), "f32"))])
    unit = _table(b, 2, [(0, "u8", _NORMALIZATION_OPTIONS), (1, "off", norm)])
    lo = [(0.0 - m) / s for m, s in zip(info.mean, info.std)]
    hi = [(255.0 - m) / s for m, s in zip(info.mean, info.std)]
    stats = _table(b, 2, [(0, "off", _vector(b, hi, "f32")), (1, "off", _vector(b, lo, "f32"))])
    return _table(b, 7, [(0, "off", name), (1, "off", desc), (3, "off", content),
                         (4, "off", _vector(b, [unit])), (5, "off", stats)])


def _output_tensor(b: flatbuffers.Builder, info: ModelInfo) -> int:
    labels = _vector(b, [_labels_file(b)])
    if info.task == "classification":
        name, desc = b.CreateString("probability"), b.CreateString("Probability of each class (softmax).")
        content = _table(b, 3, [(0, "u8", _FEATURE_PROPERTIES), (1, "off", _table(b, 0, []))])
    else:
        name = b.CreateString("segmentation_masks")
        desc = b.CreateString("Per-pixel probability of each class (softmax), [1, H, W, classes].")
        props = _table(b, 2, [(0, "i8", _GRAYSCALE)])
        dims = _table(b, 2, [(0, "i32", 1), (1, "i32", 2)])  # the mask's H and W axes
        content = _table(b, 3, [(0, "u8", _IMAGE_PROPERTIES), (1, "off", props), (2, "off", dims)])
    return _table(b, 7, [(0, "off", name), (1, "off", desc), (3, "off", content), (6, "off", labels)])


def build(info: ModelInfo) -> bytes:
    """The ``ModelMetadata`` flatbuffer of ``info``."""
    b = flatbuffers.Builder(1024)
    inputs = _vector(b, [_input_tensor(b, info)])
    outputs = _vector(b, [_output_tensor(b, info)])
    subgraph = _table(b, 10, [(0, "off", b.CreateString(info.name)), (2, "off", inputs), (3, "off", outputs)])
    strings = {k: b.CreateString(v) for k, v in (("name", info.name), ("description", info.description),
                                                  ("version", info.version), ("author", info.author),
                                                  ("min", MIN_PARSER_VERSION)) if v}
    root = _table(b, 8, [(0, "off", strings.get("name")), (1, "off", strings.get("description")),
                         (2, "off", strings.get("version")), (3, "off", _vector(b, [subgraph])),
                         (4, "off", strings.get("author")), (7, "off", strings["min"])])
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def attach(tflite_bytes: bytes, info: ModelInfo) -> bytes:
    """``tflite_bytes`` carrying the metadata of ``info`` and ``labels.txt``."""
    model = tflite_model.with_metadata(strip_files(tflite_bytes), METADATA_NAME, build(info))
    buf = io.BytesIO(model)
    buf.seek(0, io.SEEK_END)
    # Mode "a" on data that is not a zip appends a new archive after it. STORED: the
    # extractors hand out associated files as views into the model buffer.
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(LABELS_FILE, "\n".join(info.labels) + "\n")
    return buf.getvalue()


def strip_files(tflite_bytes: bytes) -> bytes:
    """The model flatbuffer without its appended zip archive (if any)."""
    buf = io.BytesIO(tflite_bytes)
    if not zipfile.is_zipfile(buf):
        return bytes(tflite_bytes)
    with zipfile.ZipFile(buf) as zf:
        # zipfile shifts header offsets by the bytes in front of the archive, so they are
        # offsets into the whole file.
        offsets = [i.header_offset for i in zf.infolist()]
    return bytes(tflite_bytes[:min(offsets)]) if offsets else bytes(tflite_bytes)


def associated_files(tflite_bytes: bytes) -> dict:
    """``{name: bytes}`` of the files zipped onto a ``.tflite`` file."""
    buf = io.BytesIO(tflite_bytes)
    if not zipfile.is_zipfile(buf):
        return {}
    with zipfile.ZipFile(buf) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


# --- reading back ----------------------------------------------------------------------------

class _Table:
    """Read access to one flatbuffer table by field slot (the writer's inverse)."""

    def __init__(self, buf, pos):
        self.t = fb_table.Table(buf, pos)

    def _at(self, slot):
        off = self.t.Offset(4 + 2 * slot)
        return off + self.t.Pos if off else None

    def string(self, slot):
        at = self._at(slot)
        return None if at is None else self.t.String(at).decode()

    def scalar(self, slot, flags, default=0):
        at = self._at(slot)
        return default if at is None else self.t.Get(flags, at)

    def table(self, slot):
        at = self._at(slot)
        return None if at is None else _Table(self.t.Bytes, self.t.Indirect(at))

    def _vector(self, slot):
        at = self._at(slot)
        if at is None:
            return 0, 0
        return self.t.Vector(at - self.t.Pos), self.t.VectorLen(at - self.t.Pos)

    def tables(self, slot):
        start, n = self._vector(slot)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(n)]

    def floats(self, slot):
        start, n = self._vector(slot)
        return [self.t.Get(flatbuffers.number_types.Float32Flags, start + 4 * i) for i in range(n)]


def _tensor(t: _Table) -> dict:
    u8, i8 = flatbuffers.number_types.Uint8Flags, flatbuffers.number_types.Int8Flags
    out = {"name": t.string(0), "description": t.string(1)}
    content = t.table(3)
    if content is not None:
        kind = content.scalar(0, u8)
        out["content"] = {_FEATURE_PROPERTIES: "feature", _IMAGE_PROPERTIES: "image"}.get(kind, kind)
        props = content.table(1)
        if kind == _IMAGE_PROPERTIES and props is not None:
            out["color_space"] = {_RGB: "RGB", _GRAYSCALE: "GRAYSCALE"}.get(props.scalar(0, i8), "UNKNOWN")
    for unit in t.tables(4):
        if unit.scalar(0, u8) == _NORMALIZATION_OPTIONS:
            norm = unit.table(1)
            out["mean"], out["std"] = norm.floats(0), norm.floats(1)
    out["files"] = [(f.string(0), f.scalar(2, i8)) for f in t.tables(6)]
    return out


def read(tflite_bytes: bytes) -> dict | None:
    """The metadata of a ``.tflite`` file as a dict (labels from ``labels.txt``), or ``None``."""
    raw = tflite_model.read_metadata(strip_files(tflite_bytes), METADATA_NAME)
    if raw is None:
        return None
    if raw[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"TFLITE_METADATA has identifier {raw[4:8]!r}, not {FILE_IDENTIFIER!r}")
    root = _Table(bytearray(raw), flatbuffers.encode.Get(flatbuffers.packer.uoffset, bytearray(raw), 0))
    subgraphs = root.tables(3)
    sub = subgraphs[0] if subgraphs else None
    files = associated_files(tflite_bytes)
    labels = files.get(LABELS_FILE, b"").decode().splitlines()
    return {"name": root.string(0), "description": root.string(1), "version": root.string(2),
            "author": root.string(4), "min_parser_version": root.string(7), "subgraphs": len(subgraphs),
            "inputs": [_tensor(t) for t in sub.tables(2)] if sub else [],
            "outputs": [_tensor(t) for t in sub.tables(3)] if sub else [],
            "labels": labels}


def check(tflite_bytes: bytes, info: ModelInfo) -> list[str]:
    """What in the file's metadata differs from ``info`` (empty: it reads back intact)."""
    try:
        meta = read(tflite_bytes)
    except Exception as e:  # a malformed flatbuffer raises anything from struct to IndexError
        return [f"metadata unreadable ({type(e).__name__}: {e})"]
    if meta is None:
        return ["no TFLITE_METADATA entry"]
    problems = []
    if meta["name"] != info.name or meta["subgraphs"] != 1:
        problems.append("name or subgraph count")
    inp = meta["inputs"][0] if len(meta["inputs"]) == 1 else {}
    if inp.get("color_space") != "RGB" or inp.get("mean") != list(info.mean) or inp.get("std") != list(info.std):
        problems.append("input image properties / normalisation")
    out = meta["outputs"][0] if len(meta["outputs"]) == 1 else {}
    if (LABELS_FILE, _TENSOR_AXIS_LABELS) not in out.get("files", []):
        problems.append("labels.txt not attached to the output tensor")
    if meta["labels"] != list(info.labels):
        problems.append(f"labels.txt holds {len(meta['labels'])} names, expected {len(info.labels)}")
    return problems
