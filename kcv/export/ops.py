"""Which operators a ``.tflite`` file uses, and which of them a phone cannot accelerate.

Checked before a file is installed (``kcv export``):

* **Flex ops** (``SELECT_TF_OPS``): TensorFlow kernels bundled into the app through the
  ~6 MB Flex delegate. They are refused unless ``--allow-flex``: a model that needs them
  is usually one layer away from a builtin-only model.
* **GPU / NNAPI delegate gaps**: builtin ops that the delegate does not take and that
  therefore run on the CPU, splitting the graph. Reported, never refused.

The two delegate tables below are copied from the delegates' own dispatch code, not from
prose documentation, because that is what the runtime actually checks:

* ``GPU_OPS``: ``NewOperationParser`` in
  ``tensorflow/lite/delegates/gpu/common/model_builder.cc`` (tensorflow/tensorflow master,
  2025). ``QUANTIZE``/``DEQUANTIZE`` are only taken with quantized-model support on; the
  GPU delegate runs int8 files by dequantizing them to float.
* ``NNAPI_OPS``: ``NNAPIDelegateKernel::Validate`` in
  ``tensorflow/lite/delegates/nnapi/nnapi_delegate.cc`` (tensorflow/tensorflow @002e5f47).
  NNAPI is deprecated from Android 15; the table still describes Android 10–14 devices.

Both delegates also restrict op *versions*, tensor types and parameters (e.g. NNAPI's DIV
is float32 only, the GPU delegate takes float tensors only); those per-node rules are not
modelled here, so "supported" means "the delegate has a kernel for this op".
``tf.lite.experimental.Analyzer(gpu_compatibility=True)`` would be the natural tool, but
in TF 2.21 it reports every model as compatible (it passed ARG_MAX and REDUCE_PROD,
which the GPU delegate lacks), so it is not used.
"""

from __future__ import annotations

GPU_OPS = frozenset("""
ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CONCATENATION CONV_2D COS DEPTHWISE_CONV_2D DEQUANTIZE
DIV ELU EXP FULLY_CONNECTED HARD_SWISH LOGISTIC LOG LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG PACK PAD POW REDUCE_MAX REDUCE_MIN REDUCE_PROD QUANTIZE RELU RELU6
LEAKY_RELU PRELU RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SIN SLICE SOFTMAX
SPACE_TO_DEPTH SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TRANSPOSE
TRANSPOSE_CONV
""".split())

NNAPI_OPS = frozenset("""
ABS ADD ARG_MAX ARG_MIN AVERAGE_POOL_2D BATCH_TO_SPACE_ND BIDIRECTIONAL_SEQUENCE_LSTM CAST
CONCATENATION CONV_2D DENSIFY DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV ELU
EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FULLY_CONNECTED GATHER GREATER
GREATER_EQUAL HARD_SWISH HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS
LESS_EQUAL LOCAL_RESPONSE_NORMALIZATION LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC
LOG_SOFTMAX LSH_PROJECTION LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL NEG NOT_EQUAL PACK PAD
PADV2 POW PRELU QUANTIZE REDUCE_ANY REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6
RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RNN RSQRT SELECT SIN SLICE
SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SQRT SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH
TILE TOPK_V2 TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNIDIRECTIONAL_SEQUENCE_RNN
""".split())

DELEGATES = {"gpu": GPU_OPS, "nnapi": NNAPI_OPS}


def list_ops(tflite_bytes: bytes) -> list[str]:
    """Operator names of a ``.tflite`` flatbuffer, in file order, without duplicates.

    Builtin ops by their schema name (``CONV_2D``); custom ops by their custom code, which
    is ``Flex<TfOpName>`` for select TF ops.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(tflite_bytes, 0)
    ops = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Builtin codes above 127 live in a second field; the old one saturates at 127.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            ops.append((code.CustomCode() or b"CUSTOM").decode())
        else:
            ops.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return list(dict.fromkeys(ops))


def check_ops(tflite_bytes: bytes) -> dict:
    """``{"ops": [...], "flex": [...], "gpu_unsupported": [...], "nnapi_unsupported": [...]}``."""
    ops = list_ops(tflite_bytes)
    report = {"ops": ops, "flex": [op for op in ops if op.startswith("Flex")]}
    for name, table in DELEGATES.items():
        report[f"{name}_unsupported"] = [op for op in ops if op not in table]
    return report
