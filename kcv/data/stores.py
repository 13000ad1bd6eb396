"""Random access to one split of a data set: image ``i`` and its target, as tf ops.

Three stores, one interface (``n``, ``element(i)``, ``target(i)``), so the training stream
can visit the images in any order (an epoch is a permutation of the indices) whatever holds
them:

- :class:`FileStore`: reads and decodes the files when asked (``--cache none``): memory does
  not grow with the number of images.
- :class:`PackedStore`: decoded images packed in memory (``--cache memory``, ``shapes``).
- :class:`DiskStore`: decoded images, one raw file each (``--cache disk``): no decoding, no
  memory, one read per image.

Images are ``uint8 [H, W, 3]``; targets int32 labels, float32 class distributions, or
``uint8 [H, W]`` masks (255 = ignore).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def decode_image(path, img_size: int | None):
    """Read and decode a PNG/JPEG/BMP file to ``uint8 [img_size, img_size, 3]`` (``None``:
    the image's own size). Grayscale and RGBA are converted to RGB by ``channels=3``; a
    JPEG's EXIF orientation is applied (:mod:`kcv.data.images`)."""
    from kcv.data.images import apply_orientation_tf, exif_orientation_tf

    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)
    img.set_shape([None, None, 3])
    img = apply_orientation_tf(img, exif_orientation_tf(raw))  # as shown, not as stored
    return img if img_size is None else resize_image(img, img_size)


def resize_image(img, img_size: int):
    """Bilinear with antialiasing (no aliasing when shrinking photos), back to uint8."""
    img = tf.image.resize(img, [img_size, img_size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def resize_long_side(images, long_side: int):
    """``images [B, H, W, 3]`` (float32 in [0, 255]) resized so the longer side is
    ``long_side``, aspect kept (each side rounded, at least 1 px); bilinear with antialiasing
    and rounded to whole values, as :func:`resize_image` makes them."""
    hw = tf.cast(tf.shape(images)[1:3], tf.float32)
    new = tf.maximum(tf.cast(tf.round(hw * (long_side / tf.reduce_max(hw))), tf.int32), 1)
    out = tf.image.resize(images, new, method="bilinear", antialias=True)
    return tf.clip_by_value(tf.round(out), 0, 255)


def resize_mask(mask, img_size: int):
    # Nearest neighbour: any interpolation would invent class indices between two labels.
    return tf.image.resize(mask[..., None], [img_size, img_size], method="nearest")[..., 0]


class FileStore:
    """A split as files: ``files`` (:class:`kcv.data.layouts.Files`: path and label or mask
    key arrays); masks come from ``read_mask(key) -> uint8 [h, w]`` (PIL: TF's PNG decoder
    turns palette indices into colours). ``size``: square side to resize to, ``None`` to
    keep each image's own size. Per file it holds a path and a target in one string or
    int32 tensor each, nothing else."""

    def __init__(self, files, read_mask: Callable[[str], np.ndarray] | None, size: int | None):
        self.n, self.size = len(files), size
        self.files = files
        self.paths = tf.constant(files.paths)
        self.read_mask = read_mask
        if read_mask is None:
            self.labels = tf.constant(files.targets)
        else:
            self.keys = tf.constant(files.targets)

    def fingerprint(self) -> str:
        """Changes when the files, their sizes or times, or the resize change."""
        h = hashlib.sha256(f"{self.size}".encode())
        for path, target in self.files:
            st = os.stat(path)
            h.update(f"{path}|{target}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def image(self, i):
        return decode_image(tf.gather(self.paths, i), self.size)

    def target(self, i):
        if self.read_mask is None:
            return tf.gather(self.labels, i)
        read = self.read_mask
        mask = tf.numpy_function(lambda key: read(os.fsdecode(key)), [tf.gather(self.keys, i)], tf.uint8,
                                 stateful=False)
        mask.set_shape([None, None])
        return mask if self.size is None else resize_mask(mask, self.size)

    def element(self, i):
        return self.image(i), self.target(i)


class PackedStore:
    """Decoded images (and masks) packed into one flat uint8 array each, with offsets and
    shapes, so images of different sizes share one buffer; labels as an array."""

    def __init__(self, images: np.ndarray, shapes: np.ndarray, targets: np.ndarray,
                 mask_shapes: np.ndarray | None = None):
        self.n = len(shapes)
        self._images = _Packed(images, shapes)
        self._masks = _Packed(targets, mask_shapes) if mask_shapes is not None else None
        self._targets = None if mask_shapes is not None else tf.constant(targets)

    def image(self, i):
        return self._images.get(i)

    def target(self, i):
        return self._masks.get(i) if self._masks is not None else tf.gather(self._targets, i)

    def element(self, i):
        return self.image(i), self.target(i)

    @property
    def nbytes(self) -> int:
        return self._images.flat.shape[0] + (self._masks.flat.shape[0] if self._masks else 0)

    @classmethod
    def from_arrays(cls, images: np.ndarray, targets: np.ndarray) -> "PackedStore":
        """Same-size images ``[N, H, W, 3]`` and labels ``[N]`` or masks ``[N, H, W]``."""
        n = len(images)
        shapes = np.tile(np.array(images.shape[1:], np.int64), (n, 1))
        if targets.ndim == 3:
            mask_shapes = np.tile(np.array(targets.shape[1:], np.int64), (n, 1))
            return cls(images.reshape(-1), shapes, targets.reshape(-1), mask_shapes)
        return cls(images.reshape(-1), shapes, targets)

    @classmethod
    def from_store(cls, store) -> "PackedStore":
        ds = tf.data.Dataset.range(store.n).map(store.element, num_parallel_calls=AUTOTUNE, deterministic=True)
        return cls.from_dataset(ds)

    @classmethod
    def from_dataset(cls, ds: tf.data.Dataset) -> "PackedStore":
        """Decode every ``(image, target)`` of ``ds`` once, into memory."""
        n, spec = int(ds.cardinality()), ds.element_spec[0]
        if n > 0 and spec.shape.is_fully_defined() and ds.element_spec[1].shape.is_fully_defined():
            return cls._from_same_size(ds, n, spec.shape.as_list())
        images, targets = [], []
        for x, y in ds.prefetch(AUTOTUNE).as_numpy_iterator():
            images.append(x)
            targets.append(y)
        shapes = np.array([x.shape for x in images], np.int64).reshape(-1, 3)
        flat = np.concatenate([x.reshape(-1) for x in images]) if images else np.zeros(0, np.uint8)
        del images
        if targets and np.ndim(targets[0]) == 2:
            mask_shapes = np.array([y.shape for y in targets], np.int64)
            return cls(flat, shapes, np.concatenate([y.reshape(-1) for y in targets]), mask_shapes)
        return cls(flat, shapes, np.stack(targets) if targets else np.zeros(0, np.int32))


    @classmethod
    def _from_same_size(cls, ds, n: int, shape: list) -> "PackedStore":
        # Written in place as the images arrive: a list of arrays, then one concatenated
        # copy, then the tensor would hold the set three times at once.
        images = np.empty([n, *shape], np.uint8)
        targets = np.empty([n, *ds.element_spec[1].shape], ds.element_spec[1].dtype.as_numpy_dtype)
        for i, (x, y) in enumerate(ds.prefetch(AUTOTUNE).as_numpy_iterator()):
            images[i], targets[i] = x, y
        return cls.from_arrays(images, targets)


class _Packed:
    def __init__(self, flat: np.ndarray, shapes: np.ndarray):
        sizes = np.prod(shapes, axis=1)
        self.flat = tf.constant(flat)
        self.offsets = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))
        self.shapes = tf.constant(shapes)
        same = len(shapes) and (shapes == shapes[0]).all()
        self.static = [int(d) for d in shapes[0]] if same else [None] * shapes.shape[1]

    def get(self, i):
        shape = tf.gather(self.shapes, i)
        part = tf.slice(self.flat, [tf.gather(self.offsets, i)], [tf.reduce_prod(shape)])
        out = tf.reshape(part, shape)
        out.set_shape(self.static)
        return out


class DiskStore:
    """Decoded images as raw bytes, one file per image (and mask) under ``directory``;
    shapes and labels in memory. Written once by :meth:`from_store`, reused when complete."""

    MARKER = "complete.json"

    def __init__(self, directory: Path, shapes: np.ndarray, targets, mask_shapes=None, static=None):
        self.n = len(shapes)
        self.directory = directory
        names = [str(directory / f"{i:08d}") for i in range(self.n)]
        self.image_files = tf.constant([f + ".img" for f in names])
        self.mask_files = tf.constant([f + ".mask" for f in names])
        self.shapes = tf.constant(shapes)
        self.mask_shapes = None if mask_shapes is None else tf.constant(mask_shapes)
        self.labels = None if mask_shapes is not None else tf.constant(targets)
        self.static = static

    def image(self, i):
        raw = tf.io.decode_raw(tf.io.read_file(tf.gather(self.image_files, i)), tf.uint8)
        img = tf.reshape(raw, tf.gather(self.shapes, i))
        img.set_shape(self.static or [None, None, 3])
        return img

    def target(self, i):
        if self.labels is not None:
            return tf.gather(self.labels, i)
        raw = tf.io.decode_raw(tf.io.read_file(tf.gather(self.mask_files, i)), tf.uint8)
        mask = tf.reshape(raw, tf.gather(self.mask_shapes, i))
        mask.set_shape((self.static or [None, None])[:2])
        return mask

    def element(self, i):
        return self.image(i), self.target(i)

    @classmethod
    def from_store(cls, store: FileStore, directory: Path) -> "DiskStore":
        directory = Path(directory)
        marker = directory / cls.MARKER
        key = store.fingerprint()
        done = json.loads(marker.read_text()) if marker.is_file() else {}
        if done.get("fingerprint") != key:
            directory.mkdir(parents=True, exist_ok=True)
            marker.unlink(missing_ok=True)
            done = _write_raw(store, directory)
            done["fingerprint"] = key
            tmp = directory / (".tmp." + cls.MARKER)
            tmp.write_text(json.dumps(done))
            os.replace(tmp, marker)  # only a complete cache is ever reused
        static = [store.size, store.size, 3] if store.size else None
        masks = np.array(done["mask_shapes"], np.int64) if done.get("mask_shapes") is not None else None
        return cls(directory, np.array(done["shapes"], np.int64).reshape(-1, 3),
                   np.array(done.get("labels") or [], np.int32), masks, static)


def _write_raw(store: FileStore, directory: Path) -> dict:
    """Decode every image of ``store`` (in parallel, by tf.data) and write its raw bytes."""
    ds = tf.data.Dataset.range(store.n).map(store.element, num_parallel_calls=AUTOTUNE, deterministic=True)
    shapes, targets = [], []
    for i, (x, y) in enumerate(ds.prefetch(AUTOTUNE).as_numpy_iterator()):
        (directory / f"{i:08d}.img").write_bytes(x.tobytes())
        shapes.append(list(x.shape))
        if np.ndim(y) == 2:
            (directory / f"{i:08d}.mask").write_bytes(y.tobytes())
            targets.append(list(y.shape))
        else:
            targets.append(int(y))
    seg = store.read_mask is not None
    return {"shapes": shapes, "mask_shapes": targets if seg else None, "labels": None if seg else targets}
