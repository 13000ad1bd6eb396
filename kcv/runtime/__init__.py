"""Running exported files: one way to open a runner (Keras, TFLite, ONNX), ``kcv predict``
and ``kcv benchmark``. Converting and verifying files lives in :mod:`kcv.export`."""
