"""tf.data input pipelines for the built-in ``shapes`` set and image folders.

Images leave the pipeline as float32 RGB in [0, 255] (normalisation is the model's first
layer); labels as int32, masks as int32 ``[H, W]`` with 255 = ignore. Decoding and resizing
run in parallel with AUTOTUNE, the decoded set is cached, shuffling is seeded, and batches
are prefetched so the accelerator never waits on Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
from PIL import Image

from kcv.data import folders, shapes
from kcv.data.images import apply_orientation_tf, exif_orientation_tf
from kcv.errors import KcvError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class DataSource:
    """A labelled data set ready for training: class names, sizes and split pipelines.

    ``raw(split)`` returns the decoded, cached, unbatched ``tf.data.Dataset`` of
    ``(uint8 image, int target)``; everything else is built on it. With ``soft_targets``
    the training split's targets are float32 class distributions ``[K]`` (soft
    pseudo-labels); the validation split keeps integer labels.
    """

    task: str
    spec: str
    img_size: int
    class_names: list
    num_train: int
    num_val: int
    raw: Callable[[str], tf.data.Dataset]
    soft_targets: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def size(self, split: str) -> int:
        return self.num_train if split == "train" else self.num_val

    def make(self, split: str) -> tf.data.Dataset:
        """Unbatched ``(float32 image, int32 target)`` pairs of ``split``."""
        return self.raw(split).map(_cast, num_parallel_calls=AUTOTUNE)

    def dataset(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_remainder: bool = False, one_hot: bool = False) -> tf.data.Dataset:
        """A batched, prefetched pipeline of ``split`` (``train`` or ``val``), no augmentation.

        Casting runs once per batch (vectorised), not once per image.
        """
        ds = self.raw(split)
        if shuffle:
            ds = ds.shuffle(min(self.size(split), 10_000), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        cast = _cast_one_hot(self.num_classes) if one_hot else _cast
        return ds.map(cast, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    def train_stream(self, batch_size: int, seed: int, epochs: int, initial_epoch: int = 0,
                     augment=None, one_hot: bool = False, drop_remainder: bool = False) -> tf.data.Dataset:
        """Batches of epochs ``initial_epoch .. epochs-1`` back to back, for ``fit(steps_per_epoch=...)``.

        Each epoch's order and augmentation are a pure function of ``(seed, epoch)``: epoch
        ``e`` is shuffled with seed ``(seed, e)`` and batch ``i`` augmented with seed
        ``(seed, e, i)``. A run resumed at epoch ``e`` therefore sees exactly the batches an
        uninterrupted run would have seen, and parallel augmentation stays deterministic.

        Args:
            augment: an :class:`~kcv.augment.Augmenter` or ``None``.
            one_hot: classification targets as one-hot float32 (soft-label losses).
        """
        raw, n = self.raw("train"), self.num_train
        steps = self.steps_per_epoch(batch_size, drop_remainder)

        def epoch(e: int) -> tf.data.Dataset:
            # Python-int seeds: Dataset.shuffle cannot take a tensor seed once a global seed is set.
            order_seed = (int(seed) * 1_000_003 + e) % (2**31 - 1)
            batches = raw.shuffle(min(n, 10_000), seed=order_seed, reshuffle_each_iteration=False)
            batches = batches.batch(batch_size, drop_remainder=drop_remainder).take(steps)
            return batches.enumerate().map(lambda i, batch: (tf.constant(e, tf.int64), i, batch))

        cast = _cast_one_hot(self.num_classes) if one_hot else _cast

        def finish(e, i, batch):
            images, targets = cast(*batch)
            if augment is None:
                return images, targets
            batch_seed = tf.stack([tf.constant(int(seed), tf.int64), e * (1 << 20) + i])
            return augment(images, targets, batch_seed)

        # One flat selector over the epochs (not a chain of concatenations, whose depth
        # would grow with the number of epochs).
        epochs_ds = [epoch(e) for e in range(initial_epoch, epochs)]
        if not epochs_ds:
            epochs_ds = [epoch(initial_epoch).take(0)]
        choice = tf.data.Dataset.range(len(epochs_ds) * steps).map(lambda j: j // steps)
        ds = tf.data.Dataset.choose_from_datasets(epochs_ds, choice)
        return ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)

    def steps_per_epoch(self, batch_size: int, drop_remainder: bool = False) -> int:
        """Batches per training epoch of :meth:`train_stream`."""
        return max(1, self.num_train // batch_size if drop_remainder else -(-self.num_train // batch_size))

    def arrays(self, split: str, limit: int | None = None):
        """``(images float32 [N,H,W,3], targets)`` of the first ``limit`` samples of ``split``."""
        ds = self.raw(split)
        if limit is not None:
            ds = ds.take(limit)
        xs, ys = [], []
        for x, y in ds.batch(64).map(_cast).as_numpy_iterator():
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)


def _cast(image, target):
    if target.dtype.is_floating:  # soft targets (class distributions) stay float
        return tf.cast(image, tf.float32), tf.cast(target, tf.float32)
    return tf.cast(image, tf.float32), tf.cast(target, tf.int32)


def _cast_one_hot(num_classes: int):
    def cast(image, target):
        if target.dtype.is_floating:  # already a distribution over the classes
            return tf.cast(image, tf.float32), tf.cast(target, tf.float32)
        return tf.cast(image, tf.float32), tf.one_hot(tf.cast(target, tf.int32), num_classes)
    return cast


def _shapes_source(task, img_size, n_train=None):
    spec = "shapes" if n_train is None else f"shapes:{n_train}"
    n_train, n_val = shapes.DEFAULT_SIZES[task] if n_train is None else (n_train, max(8, n_train // 4))
    arrays = {"train": shapes.make_split(n_train, img_size, task, "train"),
              "val": shapes.make_split(n_val, img_size, task, "val")}

    def raw(split):
        return tf.data.Dataset.from_tensor_slices(arrays[split])

    return DataSource(task, spec, img_size, shapes.class_names(task), n_train, n_val, raw)


def decode_image(path, img_size: int):
    """Read and decode a PNG/JPEG/BMP file to ``uint8 [img_size, img_size, 3]``.

    Grayscale and RGBA are converted to RGB by ``channels=3``; a JPEG's EXIF orientation is
    applied (:mod:`kcv.data.images`).
    """
    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)
    img.set_shape([None, None, 3])
    img = apply_orientation_tf(img, exif_orientation_tf(raw))  # as shown, not as stored
    img = tf.image.resize(img, [img_size, img_size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def _classification_folders(root, img_size, val_split, seed):
    found = folders.load_classification(root, val_split=val_split, seed=seed)
    items = {"train": found.train, "val": found.val}
    cache = {}

    def raw(split):
        if split not in cache:
            paths = [str(p) for p, _ in items[split]]
            labels = np.array([lab for _, lab in items[split]], np.int32)
            ds = tf.data.Dataset.from_tensor_slices((paths, labels))
            ds = ds.map(lambda p, y: (decode_image(p, img_size), y), num_parallel_calls=AUTOTUNE)
            cache[split] = ds.cache()
        return cache[split]

    return DataSource("classification", str(root), img_size, found.class_names,
                      len(found.train), len(found.val), raw)


def _segmentation_folders(root, img_size):
    found = folders.load_segmentation(root)
    # TF's PNG decoder expands palette masks to RGB, losing the class indices, so masks are
    # read with PIL (already done once to check them) and resized here with nearest neighbour.
    masks = {split: np.stack([_resize_mask(folders.read_mask(m), img_size) for _, m in pairs])
             for split, pairs in (("train", found.train), ("val", found.val))}
    cache = {}

    def raw(split):
        if split not in cache:
            pairs = found.train if split == "train" else found.val
            paths = [str(p) for p, _ in pairs]
            ds = tf.data.Dataset.from_tensor_slices((paths, masks[split]))
            ds = ds.map(lambda p, m: (decode_image(p, img_size), m), num_parallel_calls=AUTOTUNE)
            cache[split] = ds.cache()
        return cache[split]

    return DataSource("segmentation", str(root), img_size, found.class_names,
                      len(found.train), len(found.val), raw)


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    # Nearest neighbour: any interpolation would invent class indices between two labels.
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST), np.uint8)


def load_data(data: str, task: str, img_size: int, seed: int = 0, val_split: float = 0.2) -> DataSource:
    """Resolve ``--data``: ``shapes``, ``shapes:N`` (N training images) or a folder path."""
    m = re.fullmatch(r"shapes(?::(\d+))?", str(data))
    if m:
        n = int(m.group(1)) if m.group(1) else None
        if n is not None and n < 2:
            raise KcvError(f"--data {data}: need at least 2 training images")
        return _shapes_source(task, img_size, n)
    if task == "classification":
        return _classification_folders(Path(data), img_size, val_split, seed)
    return _segmentation_folders(Path(data), img_size)
