"""Classification families, one per file; importing this registers them."""

from kcv.models.classification import lenet  # noqa: F401
