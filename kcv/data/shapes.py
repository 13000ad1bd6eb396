"""The built-in ``shapes`` data set: circles, squares and triangles on textured backgrounds.

Deterministic and offline: image ``i`` of a split is drawn from its own random stream
``(seed, split, i)``, so ``shapes:200`` is a prefix of ``shapes:800`` and the validation
split never changes with the training seed. ``shapes`` alone means 3000 training / 600
validation images for classification and 800 / 200 for segmentation; ``shapes:N`` means
N training and N/4 validation images. Classification images hold one shape (label =
shape); segmentation images hold one to three shapes and a per-pixel mask
(0 = background, 1 = circle, 2 = square, 3 = triangle).
"""

from __future__ import annotations

import numpy as np

SHAPE_NAMES = ("circle", "square", "triangle")
SEGMENTATION_NAMES = ("background",) + SHAPE_NAMES
# (train, val) of plain ``--data shapes``. Classification gets more images: a CNN trained
# from scratch needs ~500 steps before it finds shape (rather than colour) features — with
# 800 images a 6-conv net stayed at chance (val 0.33 after 12 epochs), with 3000 it reached
# val 1.00 by epoch 7. Segmentation learns from every pixel, and 800 images keep the
# quick-start U-Net run under 3 minutes.
DEFAULT_SIZES = {"classification": (3000, 600), "segmentation": (800, 200)}
_SPLITS = {"train": 0, "val": 1, "test": 2, "unlabeled": 3}


def class_names(task: str) -> list[str]:
    """Class names of ``shapes`` for ``task``."""
    return list(SHAPE_NAMES if task == "classification" else SEGMENTATION_NAMES)


def _background(rng, size):
    """A smooth colour gradient plus stripes and noise, so shapes are not found by colour alone."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    img = c0 * (1 - t) + c1 * t
    freq, phase = rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * freq * (np.sin(angle) * xx - np.cos(angle) * yy) + phase)
    img += rng.uniform(5, 25) * stripes[..., None]
    img += rng.normal(0, 6, img.shape)
    return img


def _shape_mask(rng, kind, size):
    """Boolean mask of one randomly placed, sized and rotated shape of ``kind`` (0/1/2)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    r = rng.uniform(0.16, 0.3) * size
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    u = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
    v = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
    if kind == 0:  # circle
        return u**2 + v**2 <= r**2
    if kind == 1:  # square with half-side r / sqrt(2)
        h = r / np.sqrt(2)
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    # equilateral triangle with circumradius r: inside the three edge half-planes
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        a = 2 * np.pi * k / 3
        inside &= np.cos(a) * u + np.sin(a) * v <= r / 2
    return inside


def _shape_colour(rng, background_mean):
    """A colour far enough from the background mean to be visible."""
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        if np.linalg.norm(c - background_mean) > 100:
            return c
    return 255 - background_mean


def make_sample(seed: int, split: str, index: int, size: int, task: str, with_mask: bool = False):
    """One image (``uint8 [size, size, 3]``) and its label (int) or mask (``uint8 [size, size]``).

    ``with_mask=True`` (classification): ``(image, label, mask)``, the mask of the very same
    sample (0 = background, label + 1 on the shape), e.g. to score where a classifier looks.
    """
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    img = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    n_shapes = 1 if task == "classification" else int(rng.integers(1, 4))
    kinds = rng.integers(0, 3, n_shapes)
    for kind in kinds:
        m = _shape_mask(rng, int(kind), size)
        colour = _shape_colour(rng, img.mean(axis=(0, 1)))
        img[m] = colour + rng.normal(0, 6, (int(m.sum()), 3))
        mask[m] = kind + 1
    img = np.clip(img, 0, 255).astype(np.uint8)
    if task != "classification":
        return img, mask
    return (img, int(kinds[0]), mask) if with_mask else (img, int(kinds[0]))


def make_split(n: int, size: int, task: str, split: str = "train", seed: int = 0):
    """``n`` samples of a split as arrays: images ``uint8 [n, size, size, 3]`` and
    labels ``int32 [n]`` (classification) or masks ``uint8 [n, size, size]``."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}")
    images = np.empty((n, size, size, 3), np.uint8)
    targets = np.empty((n,), np.int32) if task == "classification" else np.empty((n, size, size), np.uint8)
    for i in range(n):
        images[i], targets[i] = make_sample(seed, split, i, size, task)
    return images, targets
