"""TFLite conversion (fp32, fp16, dynamic-range int8, full int8). The LiteRT runner that
verifies and runs the files is :class:`kcv.runtime.runners.LiteRTRunner`.

Every variant starts from one SavedModel written by ``Model.export(format="tf_saved_model")``
and goes through ``tf.lite.TFLiteConverter.from_saved_model`` — the route Keras' own
``Model.export(format="litert")`` takes internally (ExportArchive → SavedModel →
converter). Staging the SavedModel once lets ``kcv export --all`` convert four variants
without tracing the model four times, and hands the quantization debugger
(:mod:`kcv.export.quantize`) a real converter object, which ``Model.export`` does not expose.

Conversions allow ``SELECT_TF_OPS`` so that a model needing Flex ops still converts and
:func:`kcv.export.ops.check_ops` can name those ops; the export driver then refuses the
file unless ``--allow-flex``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
# Output type of the full-int8 file (``--int8-io``); its input is always uint8 raw pixels.
# uint8 is what MediaPipe Tasks (which refuse int8 tensors) and the Edge TPU take.
INT8_IO = ("uint8", "int8", "float")


@contextlib.contextmanager
def quiet():
    """Silence the converter: MLIR prints "fully_quantize: 0, ..." and pass statistics on
    fd 1/2 from C++, and TensorFlow warns that ``tf.lite.Interpreter`` (used inside the
    quantization debugger) is deprecated. None of it is actionable for a kcv user."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":  # the user asked for every log line
        yield
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no usable fds 1/2 (some embedded interpreters): stay loud
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def stage_saved_model(model, directory, batch: int | None = 1) -> Path:
    """Write ``model`` (an inference model) as a SavedModel with one ``serve`` endpoint.

    ``batch=1`` (the default, used for every TFLite variant) fixes the batch dimension:
    with a dynamic batch, ``Conv2DTranspose`` needs its output shape at run time and the
    file gains SHAPE/PACK ops that the GPU and NNAPI delegates do not take, splitting the
    graph. A batch-1 file can still be resized by ``interpreter.resize_tensor_input``.
    """
    import tensorflow as tf

    directory = Path(directory)
    spec = tf.TensorSpec((batch, *model.input_shape[1:]), tf.float32, name=model.inputs[0].name)
    with quiet():
        model.export(str(directory), format="tf_saved_model", verbose=False, input_signature=[spec])
    return directory


def representative_dataset(images: np.ndarray):
    """The converter's calibration callback: one float32 image per step, batch 1."""
    def gen():
        for img in images:
            yield [np.asarray(img, np.float32)[None]]
    return gen


def make_converter(saved_model_dir, variant: str, calibration: np.ndarray | None = None,
                   int8_io: str = "uint8"):
    """A ``TFLiteConverter`` configured for ``variant`` (one of :data:`VARIANTS`).

    * ``fp32``: no optimization.
    * ``fp16``: weights stored as float16 (``supported_types=[float16]``); CPU kernels
      dequantize them once at load, the GPU delegate computes in fp16.
    * ``dynamic``: weights int8, activations float, quantized on the fly per op.
    * ``int8``: weights and activations int8 calibrated on ``calibration`` images
      (``TFLITE_BUILTINS_INT8``: conversion fails rather than leave a float op behind),
      uint8 input (see :func:`finish_int8`) and an ``int8_io`` output (:data:`INT8_IO`).
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    conv.experimental_enable_resource_variables = True  # as Model.export(format="litert")
    if variant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 conversion needs calibration images")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(calibration)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = io_dtype(int8_io)
    return conv


def io_dtype(int8_io: str):
    """The TensorFlow dtype of an ``--int8-io`` choice."""
    import tensorflow as tf

    if int8_io not in INT8_IO:
        raise ValueError(f"int8_io must be one of {INT8_IO}, not {int8_io!r}")
    return {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}[int8_io]


def finish_int8(data: bytes) -> bytes:
    """Declare the uint8 input of a full-int8 file as raw pixels (scale 1, zero point 0);
    :func:`kcv.export.tflite_model.set_pixel_input` says why. A file whose first layer
    ``--int8-keep-float`` kept in float has a float input and is left as it is."""
    from kcv.export.tflite_model import io_types, set_pixel_input

    return set_pixel_input(data) if io_types(data)[0] == "uint8" else data


def convert(saved_model_dir, variant: str, calibration: np.ndarray | None = None,
            int8_io: str = "uint8") -> bytes:
    """The ``.tflite`` flatbuffer of ``variant``."""
    with quiet():
        data = make_converter(saved_model_dir, variant, calibration, int8_io).convert()
    return finish_int8(data) if variant == "int8" else data


def convert_fp32(model, path: Path, **_) -> None:
    """Write ``model`` as a float32 batch-1 ``.tflite`` file (standalone helper, used by the
    registry-wide zoo test).

    Freezes a traced concrete function and converts the frozen graph, without staging a
    SavedModel: TF 2.21's SavedModel route spends O(captures²) time matching captured
    variables (``_trace_gradient_functions``), 46 of 105 s for EfficientNet-B7, and the
    frozen route converts EfficientNet-B0 in 5 s instead of 14 s. Same ops, same parity.
    """
    import logging

    import tensorflow as tf

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name=model.inputs[0].name)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.experimental_lower_to_saved_model = False
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing the trackable_obj": we choose not to
    try:
        with quiet():
            data = conv.convert()
    finally:
        absl.setLevel(level)
    Path(path).write_bytes(data)
