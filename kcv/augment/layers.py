"""The three augmentation layers Keras 3 core lacks in the form kcv needs.

- :class:`RandomResizedCrop`: a random crop per sample, resized back (Keras' ``RandomCrop``
  draws one offset per batch, changes the output size, and resizes masks bilinearly).
- :class:`RandomRotate90`: rotation by a random multiple of 90° per sample, exact.
- :class:`CutMix`: Keras' ``CutMix`` with masks pasted like the image (the core layer's
  channel broadcast breaks single-channel masks) and labels mixed by the exact pasted
  pixel fraction (the core layer uses the area of the float box, which is off by up to a
  row and a column of pixels).

The two geometric layers reuse ``keras.layers.RandomRotation``'s machinery: one projective
matrix per sample applied with ``affine_transform``, bilinear for images and nearest for
segmentation masks, so image and mask move together.
"""

from __future__ import annotations

import keras

from kcv import compat


class _AffineAugment(keras.layers.RandomRotation):
    """Base: subclasses return ``[B, 8]`` projective matrices from :meth:`_matrices`.

    RandomRotation applies ``transformation["rotation_matrix"]`` to images (layer
    interpolation) and masks (nearest) with the layer's fill mode; only the matrix differs.
    """

    def __init__(self, fill_mode="reflect", fill_value=0.0, seed=None, **kwargs):
        super().__init__(factor=0.0, fill_mode=fill_mode, fill_value=fill_value, seed=seed, **kwargs)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        ops = self.backend
        images = data["images"] if isinstance(data, dict) else data
        shape = ops.core.shape(images)
        batch, height, width = (shape[0], shape[1], shape[2]) if len(shape) == 4 else (1, *shape[:2])
        seed = seed or compat.preprocessing_seed_generator(self)
        matrix = self._matrices(batch, height, width, seed)
        if len(shape) == 3:
            matrix = ops.numpy.squeeze(matrix, axis=0)
        return {"rotation_matrix": matrix, "image_height": height, "image_width": width,
                "batch_size": batch}

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        raise NotImplementedError(f"{type(self).__name__} does not transform boxes")

    def _matrices(self, batch, height, width, seed):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.pop("factor", None)
        return config


@keras.saving.register_keras_serializable(package="kcv")
class RandomResizedCrop(_AffineAugment):
    """Crop a random square window of ``min_fraction``–100 % of the side at a random
    position, resized back to the input size (Szegedy et al., "Going deeper with
    convolutions", 2015, scale augmentation; area-preserving aspect here).

    Args:
        min_fraction: smallest crop side as a fraction of the image side, in (0, 1].
    """

    def __init__(self, min_fraction=0.8, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < float(min_fraction) <= 1.0:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
        self.min_fraction = float(min_fraction)

    def _matrices(self, batch, height, width, seed):
        ops = self.backend
        s = ops.random.uniform((batch,), self.min_fraction, 1.0, seed=seed)
        u = ops.random.uniform((batch, 2), 0.0, 1.0, seed=seed)
        # output pixel (x, y) samples input (s*x + ox, s*y + oy); the window stays inside.
        ox = u[:, 0] * (1.0 - s) * ops.cast(width - 1, "float32")
        oy = u[:, 1] * (1.0 - s) * ops.cast(height - 1, "float32")
        zero = ops.numpy.zeros_like(s)
        return ops.numpy.stack([s, zero, ox, zero, s, oy, zero, zero], axis=1)

    def get_config(self):
        return {**super().get_config(), "min_fraction": self.min_fraction}


@keras.saving.register_keras_serializable(package="kcv")
class RandomRotate90(_AffineAugment):
    """Rotate each sample by 0, 90, 180 or 270° (0 or 180° for non-square inputs).

    Integer-exact: every output pixel reads exactly one input pixel, so nothing is
    interpolated or filled, for images and masks alike.
    """

    def _matrices(self, batch, height, width, seed):
        ops = self.backend
        square = isinstance(height, int) and height == width
        k = ops.cast(ops.random.uniform((batch,), 0.0, 4.0 if square else 2.0, seed=seed), "int32")
        if not square:
            k = k * 2
        n, m = ops.cast(width - 1, "float32"), ops.cast(height - 1, "float32")
        # rows: k = 0, 1, 2, 3 as [a0, a1, a2, b0, b1, b2, c0, c1] (output -> input coordinates)
        table = ops.numpy.stack([
            ops.numpy.stack([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
            ops.numpy.stack([0.0, 1.0, 0.0, -1.0, 0.0, n, 0.0, 0.0]),
            ops.numpy.stack([-1.0, 0.0, n, 0.0, -1.0, m, 0.0, 0.0]),
            ops.numpy.stack([0.0, -1.0, m, 1.0, 0.0, 0.0, 0.0, 0.0]),
        ])
        return ops.numpy.take(table, k, axis=0)


@keras.saving.register_keras_serializable(package="kcv")
class CutMix(keras.layers.CutMix):
    """CutMix (Yun et al., ICCV 2019, arXiv:1905.04899) that also pastes segmentation masks.

    The label weight of the pasted sample is the fraction of pixels actually pasted.
    """

    def get_random_transformation(self, data, training=True, seed=None):
        t = super().get_random_transformation(data, training=training, seed=seed)
        if t is not None:
            ops = self.backend
            pasted = ops.numpy.mean(ops.cast(t["batch_masks"][..., 0], "float32"), axis=(1, 2))
            t["mix_weight"] = 1.0 - pasted
        return t

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        if not training or transformation is None:
            return segmentation_masks
        ops = self.backend
        region = transformation["batch_masks"][..., :1]
        other = ops.numpy.take(segmentation_masks, transformation["permutation_order"], axis=0)
        return ops.numpy.where(region, other, segmentation_masks)
