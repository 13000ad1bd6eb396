"""Evaluation: scores of a model or a file on a data split (``kcv eval``, the end of
training, export verification)."""
