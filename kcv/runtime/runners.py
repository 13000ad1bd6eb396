"""One calling convention for every runtime: ``runner(images float32 [N,H,W,3]) -> probs``.

:class:`KerasRunner` (``.keras`` / an in-memory model), :class:`SavedModelRunner`
(``saved_model/``), :class:`LiteRTRunner` (``.tflite``) and :class:`OnnxRunner` (``.onnx``).
:func:`open_runner` is the one way to open any of them: export verification, ``kcv predict``
and ``kcv benchmark`` only ever talk to this interface.

Nothing here imports TensorFlow or Keras at module level: a ``.tflite`` or ``.onnx`` file
runs with LiteRT or onnxruntime alone.

ONNX. onnxruntime's ``ORT_ENABLE_ALL`` (constant folding, Conv+BN+activation fusion,
its own transpose optimizer, NCHWc blocked layout on x86) is what makes it competitive:
at ``ORT_ENABLE_BASIC`` MobileNetV2 ran 2.2× LiteRT's latency, at ``ALL`` 1.0×. Its
intra-op thread pool spins between calls by default; on a small shared CPU those spinning
threads steal cycles from everything else (LiteRT timed right after a spinning session
went from 16 to 29 ms) and the p95 grows 5–20×, so kcv turns spinning off
(``benchmarks/onnx_layout.py``, figures in benchmarks/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kcv.errors import KcvError

SUFFIXES = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}
KINDS = ("keras", "tflite", "onnx", "tf")  # "tf": a SavedModel folder (report.json's runtime names)


class KerasRunner:
    """A Keras inference model behind a ``tf.function`` (one trace, any batch size).

    ``model.predict`` costs ~100 ms of per-call overhead (docs/design.md §8), so single images go
    through a traced function instead.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        shape = tuple(model.input_shape[1:])
        self._fn = tf.function(lambda x: model(x, training=False), jit_compile=False,
                               input_signature=[tf.TensorSpec((None, *shape), tf.float32)])

    @property
    def input_shape(self) -> tuple:
        return tuple(self.model.input_shape[1:])

    def __call__(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        images = np.asarray(images, np.float32)
        return np.concatenate([np.asarray(self._fn(images[i:i + batch_size]))
                               for i in range(0, len(images), batch_size)]).astype(np.float32)


class SavedModelRunner(KerasRunner):
    """A SavedModel exported by kcv (``serve`` endpoint), run by TensorFlow."""

    def __init__(self, path):  # noqa: D107 — no Keras model to wrap, only the endpoint
        import kcv

        kcv.load_keras(f"{path}: a SavedModel")  # quietly; kcv layers must be registered
        import tensorflow as tf

        self._loaded = tf.saved_model.load(str(path))
        self._fn = self._loaded.serve
        spec = self._fn.input_signature[0] if self._fn.input_signature else None
        self._shape = tuple(spec.shape[1:]) if spec is not None else (None, None, 3)

    @property
    def input_shape(self) -> tuple:
        return self._shape


def _inference_keras(path):
    """Load a ``.keras`` file and return its inference model (softmax on the main head)."""
    import kcv

    kcv.load_keras(f"{path}: a .keras model")  # TensorFlow quietly, then the custom layers
    import keras

    from kcv.models import inference_model

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # corrupt, truncated or not a Keras archive
        raise KcvError(f"{path}: cannot load model ({type(e).__name__}: {str(e)[:200]})") from None
    return inference_model(model)


class LiteRTRunner:
    """Runs a ``.tflite`` file one image at a time in the LiteRT interpreter (XNNPACK).

    Args:
        model: path of a ``.tflite`` file, or its bytes.
        num_threads: CPU threads for XNNPACK.

    Integer (int8) input and output tensors are quantized and dequantized here with the
    file's own scale and zero point, so callers always pass float pixels and get float
    probabilities.
    """

    def __init__(self, model, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        from kcv._quiet import silenced_fd2

        source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) \
            else {"model_path": str(model)}
        with silenced_fd2():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on every load
            self.interpreter = Interpreter(**source, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple:
        """``(H, W, C)`` of the input (``None`` where the file allows any size)."""
        sig = self.input.get("shape_signature", self.input["shape"])
        return tuple(None if d < 0 else int(d) for d in sig[1:])

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


def kind_of(path) -> str | None:
    """The runtime of a model path: ``keras``, ``tflite``, ``onnx``, ``tf`` (SavedModel
    folder), or ``None`` if it is none of them."""
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "tf"
    return SUFFIXES.get(path.suffix.lower())


def open_runner(model, kind: str | None = None, threads: int = 2):
    """A runner for ``model``: the one way kcv opens a model to run it.

    Args:
        model: a ``.keras``, ``.tflite`` or ``.onnx`` file, a ``saved_model/`` folder, the
            bytes of a ``.tflite``/``.onnx`` file (``kind`` required), or an in-memory Keras
            model, run as it is (pass an inference model: softmax on the main head).
        kind: one of :data:`KINDS`; default: from the path.
        threads: CPU threads of LiteRT (XNNPACK) and onnxruntime (intra-op).

    A missing, unreadable or corrupt file raises :class:`KcvError` naming it.
    """
    if hasattr(model, "inputs") and hasattr(model, "predict"):  # a Keras model in memory
        return KerasRunner(model)
    if isinstance(model, (bytes, bytearray)):
        if kind not in ("tflite", "onnx"):
            raise ValueError(f"open_runner: bytes need kind='tflite' or 'onnx', not {kind!r}")
        return LiteRTRunner(model, threads) if kind == "tflite" else OnnxRunner(model, threads)
    path = Path(model)
    kind = kind or kind_of(path)
    if kind is None:
        raise KcvError(f"{path}: not a model file (expected .keras, .tflite or .onnx)")
    if kind == "tf":
        return SavedModelRunner(path)
    if not path.is_file():
        raise KcvError(f"{path}: file not found")
    if kind == "keras":
        return KerasRunner(_inference_keras(path))
    try:
        return LiteRTRunner(path, threads) if kind == "tflite" else OnnxRunner(path, threads)
    except Exception as e:  # the runtimes raise ValueError / RuntimeError / their own types
        raise KcvError(f"{path}: cannot load {kind} model ({type(e).__name__}: {str(e)[:200]})") from None
