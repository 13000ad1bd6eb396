"""Export: a table of formats, each written to a temporary file, verified in its own
runtime against the Keras inference model, and only then renamed into ``exports/``."""

from kcv.export.formats import FORMATS, ExportOptions, export_run

__all__ = ["FORMATS", "ExportOptions", "export_run"]
