"""Class-colour masks and overlays for segmentation predictions (``kcv predict``).

Masks are written as palette PNGs: the pixel value *is* the class index (what docs/design.md §5
expects of a mask, so a prediction can be fed back as a label), and the palette makes it
viewable. Colours follow the PASCAL VOC palette (bit-interleaved class index), which is
what most segmentation tools use, so class 0 (background) is black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kcv import runs


def palette(num_classes: int = 256) -> np.ndarray:
    """``uint8 [num_classes, 3]`` colours of the PASCAL VOC palette."""
    colors = np.zeros((num_classes, 3), np.uint8)
    for i in range(num_classes):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colors[i] = (r, g, b)
    return colors


def mask_image(mask: np.ndarray) -> Image.Image:
    """A ``P``-mode PIL image of a class-index mask (``uint8 [H, W]``) with the VOC palette."""
    img = Image.fromarray(np.asarray(mask, np.uint8), mode="P")
    img.putpalette(palette(256).reshape(-1).tolist())
    return img


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over ``image`` (``uint8 [H, W, 3]``); background (0) left as is."""
    colors = palette(max(int(mask.max()) + 1, 1))[mask]
    out = image.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colors[fg]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def save_mask_and_overlay(image: np.ndarray, mask: np.ndarray, mask_path, overlay_path) -> tuple[Path, Path]:
    """Write the palette mask PNG and the overlay PNG atomically."""
    with runs.atomic_path(mask_path) as tmp:
        mask_image(mask).save(tmp, format="PNG")
    with runs.atomic_path(overlay_path) as tmp:
        Image.fromarray(overlay(image, mask)).save(tmp, format="PNG")
    return Path(mask_path), Path(overlay_path)
