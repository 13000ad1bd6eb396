"""tf.data input pipelines: the built-in ``shapes`` set and every data layout on disk.

Images leave the pipeline as float32 RGB in [0, 255] (normalisation is the model's first
layer); labels as int32, masks as int32 ``[H, W]`` with 255 = ignore.

Streaming (docs/datasets.md): a split is a list of files with random access by index. An
epoch is a permutation of the indices (a pure function of ``(seed, epoch)``); images and
masks are read and decoded only when their batch is due, in parallel, and batches are
prefetched, so memory does not grow with the number of images. Caching the decoded set is a
choice (:data:`CACHE_MODES`, :meth:`DataSource.cached`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from kcv.data import layouts, shapes, stores
from kcv.data.crop import Crop
from kcv.errors import KcvError

AUTOTUNE = tf.data.AUTOTUNE
from kcv.contracts import CACHE_MODES  # noqa: E402,F401
# ``--cache auto`` keeps the decoded set in memory only below this (images + masks, both
# splits). 1 GiB: 6,900 images at 224 px; ImageNet-size sets stream.
MEMORY_BUDGET = 1 << 30
# decode_image is re-exported here: unlabeled images and calibration sets decode with it.
decode_image = stores.decode_image


class _StoreRaw:
    """``raw(split)`` of a source with random access: its stores, read in index order.

    Kept as a class so :meth:`DataSource.train_stream` can tell it from a ``raw`` that a
    plugin replaced (distillation's unlabeled images, self-training's pseudo-labels).
    """

    def __init__(self, splits: dict):
        self.splits = splits

    def __call__(self, split: str) -> tf.data.Dataset:
        store = self.splits[split]
        return tf.data.Dataset.range(store.n).map(store.element, num_parallel_calls=AUTOTUNE,
                                                  deterministic=True)


@dataclass
class DataSource:
    """A labelled data set ready for training: class names, sizes and split pipelines.

    ``raw(split)`` returns the decoded, unbatched ``tf.data.Dataset`` of
    ``(uint8 image, int target)`` in file order; everything else is built on it. With
    ``soft_targets`` the training split's targets are float32 class distributions ``[K]``
    (soft pseudo-labels); the validation split keeps integer labels. ``crop`` (segmentation):
    images keep their own size; training cuts random crops, validation takes whole images.
    """

    task: str
    spec: str
    img_size: int
    class_names: list
    num_train: int
    num_val: int
    raw: Callable[[str], tf.data.Dataset]
    soft_targets: bool = False
    crop: Crop | None = None
    cache: str = "none"  # what holds the decoded images: none (stream), memory or disk
    estimate: Callable[[], int] | None = None  # bytes of the decoded set (both splits)
    own_size: bool = False  # images (and masks) at their own size, not resized to img_size

    @property
    def decoded_bytes(self) -> int | None:
        """Bytes of the decoded images and masks of both splits (``None``: not known).
        Computed on demand: with ``crop`` it reads every file's header."""
        return self.estimate() if self.estimate else None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def size(self, split: str) -> int:
        return self.num_train if split == "train" else self.num_val

    def make(self, split: str) -> tf.data.Dataset:
        """Unbatched ``(float32 image, int32 target)`` pairs of ``split``."""
        return self.raw(split).map(_cast, num_parallel_calls=AUTOTUNE)

    def targets(self, split: str) -> tf.data.Dataset:
        """The targets of ``split`` alone, in order (masks are read without their images)."""
        if isinstance(self.raw, _StoreRaw):
            store = self.raw.splits[split]
            return tf.data.Dataset.range(store.n).map(store.target, num_parallel_calls=AUTOTUNE)
        return self.raw(split).map(lambda x, y: y)

    def dataset(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_remainder: bool = False, one_hot: bool = False) -> tf.data.Dataset:
        """A batched, prefetched pipeline of ``split`` (``train`` or ``val``), no augmentation.

        With ``crop`` or ``own_size`` every image keeps its own size, so batches hold one
        image. Casting runs once per batch (vectorised), not once per image.
        """
        ds = self.raw(split)
        if shuffle:
            ds = ds.shuffle(min(self.size(split), 10_000), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(1 if self.crop or self.own_size else batch_size, drop_remainder=drop_remainder)
        cast = _cast_one_hot(self.num_classes) if one_hot else _cast
        return ds.map(cast, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    def cached(self, mode: str, directory: Path | None = None) -> "DataSource":
        """This source with its decoded set held as ``--cache mode`` says.

        ``none``: stream from the files every epoch. ``memory``: decode once into memory.
        ``disk``: decode once into one file per image under ``directory`` (reused when
        complete, e.g. by a resumed run). ``auto``: ``memory`` if the decoded set fits
        :data:`MEMORY_BUDGET`, else ``none``.
        """
        if mode not in CACHE_MODES:
            raise KcvError(f"--cache '{mode}': choose one of {', '.join(CACHE_MODES)}")
        if not isinstance(self.raw, _StoreRaw):
            return self  # a plugin's source: its own extra images are already in memory
        splits = self.raw.splits
        if all(isinstance(s, stores.PackedStore) for s in splits.values()):
            return replace(self, cache="memory")  # shapes: generated in memory
        if mode == "auto":
            mode = "memory" if (self.decoded_bytes or 0) <= MEMORY_BUDGET else "none"
        if mode == "none":
            return self
        if mode == "disk" and directory is None:
            raise KcvError("--cache disk: needs a run directory to hold the cache")
        make = (lambda split, s: stores.PackedStore.from_store(s)) if mode == "memory" else \
            (lambda split, s: stores.DiskStore.from_store(s, Path(directory) / split))
        return replace(self, raw=_StoreRaw({k: make(k, s) for k, s in splits.items()}), cache=mode)

    def train_stream(self, batch_size: int, seed: int, epochs: int, initial_epoch: int = 0,
                     augment=None, one_hot: bool = False, drop_remainder: bool = False,
                     shard: tuple[int, int] | None = None, local_replicas: int = 1) -> tf.data.Dataset:
        """Batches of epochs ``initial_epoch .. epochs-1`` back to back, for ``fit(steps_per_epoch=...)``.

        Each epoch's order and augmentation are a pure function of ``(seed, epoch)``: epoch
        ``e`` is the permutation :func:`epoch_order` ``(seed, e)``, image ``j`` of the epoch
        cropped with seed ``(seed, e, j)`` and batch ``i`` augmented with seed ``(seed, e, i)``.
        A run resumed at epoch ``e`` therefore sees exactly the batches an uninterrupted run
        would have seen, and parallel decoding and augmentation stay deterministic. Each
        epoch's pipeline is built when the epoch starts, so the number of epochs costs nothing.

        Args:
            augment: an :class:`~kcv.augment.Augmenter` or ``None``.
            one_hot: classification targets as one-hot float32 (soft-label losses).
            shard: ``(worker, workers)`` under multi-worker training: this worker reads only
                its slice of every global batch (``batch_size`` is then the global batch) and
                the stream yields its per-replica batches, ``local_replicas`` per step.
        """
        store = self._train_store()
        n, steps = store.n, self.steps_per_epoch(batch_size, drop_remainder)
        worker, workers = shard or (0, 1)
        replicas = workers * local_replicas
        if replicas > 1 and (batch_size % replicas or not drop_remainder):
            raise KcvError(f"--batch-size {batch_size}: must be a multiple of the {replicas} replicas")
        crop = self.crop

        def load(e, j, i):  # image j of epoch e is image i of the split
            image, target = store.element(i)
            if crop is not None:
                image, target = crop.random(image, target, _seed(seed, e, j))
            return image, target

        def epoch(e):
            order = tf.data.Dataset.from_tensor_slices(epoch_order(seed, e, n)).enumerate()
            order = order.take(steps * batch_size)
            if workers > 1:  # keep this worker's slice of every global batch (ids of the epoch kept)
                per = batch_size // workers
                order = order.batch(batch_size, drop_remainder=True)
                order = order.map(lambda j, i: (j[worker * per:(worker + 1) * per],
                                                i[worker * per:(worker + 1) * per])).unbatch()
            images = order.map(lambda j, i: load(e, j, i), num_parallel_calls=AUTOTUNE, deterministic=True)
            batches = images.batch(batch_size // replicas, drop_remainder=drop_remainder)
            batches = batches.take(steps * local_replicas)
            return batches.enumerate().map(lambda i, batch: (e, i, batch))

        cast = _cast_one_hot(self.num_classes) if one_hot else _cast

        def finish(e, i, batch):
            images, targets = cast(*batch)
            if augment is None:
                return images, targets
            # one replica: (seed, e, i); more: each replica's part of the batch its own draws
            batch_seed = tf.stack([tf.constant(int(seed), tf.int64), (e * (1 << 20) + i) * workers + worker])
            return augment(images, targets, batch_seed)

        ds = tf.data.Dataset.range(initial_epoch, max(initial_epoch, epochs)).flat_map(epoch)
        return ds.map(finish, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)

    def _train_store(self):
        if isinstance(self.raw, _StoreRaw):
            return self.raw.splits["train"]
        if self.crop is not None:
            raise KcvError("--crop: cannot be combined with --unlabeled or --pseudo-labels "
                           "(their images come at --img-size)")
        # a plugin's concatenated split (kcv.train.distill, self_training): decoded once
        # into memory, as those images always were
        return stores.PackedStore.from_dataset(self.raw("train"))

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


def epoch_order(seed: int, epoch, n: int) -> tf.Tensor:
    """The order of the ``n`` training images in ``epoch``: a permutation seeded by
    ``(seed, epoch)`` (stateless, so any epoch can be built alone, e.g. on resume)."""
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.index_shuffle(tf.range(n, dtype=tf.int64), key, max_index=n - 1)


def _seed(seed: int, e, j):
    return tf.stack([tf.constant(int(seed), tf.int64), tf.cast(e, tf.int64) * (1 << 32) + tf.cast(j, tf.int64)])


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


def _shapes_source(task, img_size, n_train=None, crop=None):
    spec = "shapes" if n_train is None else f"shapes:{n_train}"
    n_train, n_val = shapes.DEFAULT_SIZES[task] if n_train is None else (n_train, max(8, n_train // 4))
    splits = {"train": stores.PackedStore.from_arrays(*shapes.make_split(n_train, img_size, task, "train")),
              "val": stores.PackedStore.from_arrays(*shapes.make_split(n_val, img_size, task, "val"))}
    return DataSource(task, spec, img_size, shapes.class_names(task), n_train, n_val, _StoreRaw(splits),
                      crop=crop, cache="memory")


def _file_source(data: str, task: str, img_size: int, seed: int, val_split: float, crop,
                 own_size: bool = False) -> DataSource:
    listing = layouts.load(data, task, seed=seed, val_split=val_split)
    own_size = bool(crop or own_size)  # crops are cut from the photo at its own size
    size = None if own_size else img_size
    splits = {split: stores.FileStore(listing.splits[split], listing.read_mask, size)
              for split in ("train", "val")}
    return DataSource(task, listing.spec, img_size, listing.class_names, splits["train"].n,
                      splits["val"].n, _StoreRaw(splits), crop=crop,
                      estimate=lambda: listing.decoded_bytes(size), own_size=own_size)


def load_data(data: str, task: str, img_size: int, seed: int = 0, val_split: float = 0.2,
              crop: Crop | None = None, own_size: bool = False) -> DataSource:
    """Resolve ``--data``: ``shapes``, ``shapes:N`` (N training images), a layout named
    ``voc:PATH``, ``cityscapes:PATH``, ``coco:PATH``, ``csv:FILE``, or a path whose layout is
    recognised (:mod:`kcv.data.layouts`). Every file is checked before this returns; images
    are decoded only when the pipeline reads them. ``own_size`` (files only; implied by
    ``crop``): images and masks at their own size, batched one by one, for scoring."""
    m = re.fullmatch(r"shapes(?::(\d+))?", str(data))
    if m:
        n = int(m.group(1)) if m.group(1) else None
        if n is not None and n < 2:
            raise KcvError(f"--data {data}: need at least 2 training images")
        return _shapes_source(task, img_size, n, crop)
    return _file_source(str(data), task, img_size, seed, val_split, crop, own_size)
