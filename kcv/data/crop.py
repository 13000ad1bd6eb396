"""Segmentation at the resolution of the photos: random scaled crops for training.

The papers train on crops cut from the image at its own size and score whole images
(FCN, Long et al. 2015; DeepLab v3+, Chen et al. 2018: random scale 0.5-2.0, crop 513,
flip). Squashing a 2048x1024 Cityscapes frame to a small square first would teach the
model squashed objects and throw the detail away. ``--crop N --scale 0.5,2.0`` does what
the papers do, per image, before batching (crops of one size batch together).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from kcv.contracts import IGNORE_LABEL
from kcv.errors import KcvError


@dataclass(frozen=True)
class Crop:
    """Random scale in ``scale``, then a random ``size`` x ``size`` crop, then a random
    horizontal flip. Where the scaled image is smaller than the crop it is padded: image 0,
    mask :data:`~kcv.contracts.IGNORE_LABEL` (no loss there)."""

    size: int
    scale: tuple = (0.5, 2.0)

    def random(self, image, mask, seed):
        """``(uint8 [size, size, 3], uint8 [size, size])`` from an image and its mask of any
        size; ``seed`` (int64 ``[2]``) fixes every draw."""
        s_scale, s_y, s_x, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
        scale = tf.random.stateless_uniform([], s_scale, self.scale[0], self.scale[1])
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        new = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), 1)
        image = tf.image.resize(image, new, method="bilinear", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        mask = tf.image.resize(mask[..., None], new, method="nearest")[..., 0]
        pad = tf.maximum(self.size - new, 0)
        image = tf.pad(image, [[0, pad[0]], [0, pad[1]], [0, 0]])
        mask = tf.pad(mask, [[0, pad[0]], [0, pad[1]]], constant_values=IGNORE_LABEL)
        room = tf.shape(mask) - self.size + 1
        y0 = tf.random.stateless_uniform([], s_y, 0, room[0], dtype=tf.int32)
        x0 = tf.random.stateless_uniform([], s_x, 0, room[1], dtype=tf.int32)
        image = image[y0:y0 + self.size, x0:x0 + self.size]
        mask = mask[y0:y0 + self.size, x0:x0 + self.size]
        flip = tf.random.stateless_uniform([], s_flip) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
        image.set_shape([self.size, self.size, 3])
        mask.set_shape([self.size, self.size])
        return image, mask


def parse_crop(crop: int | None, scale: str | None) -> Crop | None:
    """``--crop N`` and ``--scale LO,HI`` as a :class:`Crop` (``None`` without ``--crop``)."""
    if crop is None:
        if scale is not None:
            raise KcvError("--scale: only with --crop N")
        return None
    if int(crop) < 1:
        raise KcvError(f"--crop {crop}: must be at least 1")
    lo, hi = 0.5, 2.0
    if scale is not None:
        try:
            lo, hi = (float(v) for v in str(scale).split(","))
        except ValueError:
            raise KcvError(f"--scale '{scale}': expected LO,HI, e.g. 0.5,2.0") from None
        if not 0 < lo <= hi or hi > 16:
            raise KcvError(f"--scale '{scale}': need 0 < LO <= HI <= 16")
    return Crop(int(crop), (lo, hi))
