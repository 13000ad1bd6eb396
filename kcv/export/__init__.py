"""Export: a table of formats, each written to a temporary file, verified in its own
runtime against the Keras inference model, and only then renamed into ``exports/``.

The names below load lazily: the runners in :mod:`kcv.export.tflite` and
:mod:`kcv.export.onnx` are used by ``kcv predict`` without TensorFlow, and the format
table imports the verification code, which needs Keras.
"""

__all__ = ["FORMATS", "ExportOptions", "export_run"]


def __getattr__(name):
    if name in __all__:
        from kcv.export import formats

        return getattr(formats, name)
    raise AttributeError(f"module 'kcv.export' has no attribute {name!r}")
