"""Segmentation families, one per file; importing this registers them."""

from kcv.models.segmentation import unet  # noqa: F401
