"""Unlabeled images for distillation and self-training: ``--unlabeled DIR|shapes[:N]``.

``DIR`` is a flat folder of images (``*.png|jpg|jpeg|bmp``, sorted by name; sub-folders
are ignored). ``shapes`` / ``shapes:N`` draws N images from the built-in data's own
``unlabeled`` split (never the training or validation images); its true labels are kept
aside so reports can say how accurate the pseudo-labels were, and are never trained on.

Every file is checked before anything trains, with one error naming the bad file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from kcv.contracts import IGNORE_LABEL
from kcv.data import folders, shapes
from kcv.errors import KcvError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class UnlabeledImages:
    """An ordered set of unlabeled images at ``img_size``.

    Attributes:
        spec: the ``--unlabeled`` value.
        names: one name per image (file names, or ``shapes-unlabeled-<i>``), in order.
        items: per image, what :meth:`dataset` decodes: a file path (folders) or the image.
        truth: the true targets where known (``shapes``), else ``None``; diagnostics only.
    """

    spec: str
    img_size: int
    names: list
    items: object
    truth: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def dataset(self, indices=None, targets=None) -> tf.data.Dataset:
        """Unbatched uint8 images in order (``indices`` picks a subset), or with ``targets``
        ``(image, target)`` pairs built from ONE dataset of ``(item, target)`` elements, so
        an image can never be paired with another image's target."""
        items = self.items if indices is None else _take(self.items, np.asarray(indices, np.int64))
        if isinstance(items, list) and not items:  # an empty list would become a float32 tensor
            items = tf.constant([], tf.string)
        size = self.img_size
        if isinstance(items, np.ndarray) and items.dtype == np.uint8:
            load = lambda x: x  # noqa: E731  (already decoded)
        else:
            from kcv.data.pipeline import decode_image

            load = lambda path: decode_image(path, size)  # noqa: E731
        if targets is None:
            return tf.data.Dataset.from_tensor_slices(items).map(load, num_parallel_calls=AUTOTUNE)
        ds = tf.data.Dataset.from_tensor_slices((items, targets))
        return ds.map(lambda x, y: (load(x), y), num_parallel_calls=AUTOTUNE)


def _take(items, indices):
    return items[indices] if isinstance(items, np.ndarray) else [items[i] for i in indices]


def load_unlabeled(spec: str, task: str, img_size: int, flag: str = "--unlabeled") -> UnlabeledImages:
    """Resolve ``--unlabeled``: ``shapes``, ``shapes:N`` or a flat folder of images.

    Raises:
        KcvError: missing or empty folder, or an unreadable image (named).
    """
    m = re.fullmatch(r"shapes(?::(\d+))?", str(spec))
    if m:
        n = int(m.group(1)) if m.group(1) else shapes.DEFAULT_SIZES[task][0]
        if n < 1:
            raise KcvError(f"{flag} {spec}: need at least 1 image")
        images, truth = shapes.make_split(n, img_size, task, "unlabeled")
        return UnlabeledImages(str(spec), img_size, [f"shapes-unlabeled-{i}" for i in range(n)],
                               images, truth)
    root = Path(spec)
    if not root.exists():
        raise KcvError(f"{flag} {spec}: folder not found")
    if not root.is_dir():
        raise KcvError(f"{flag} {spec}: not a folder")
    files = folders._images_in(root)
    if not files:
        raise KcvError(f"{flag} {spec}: no .png/.jpg/.bmp images directly in the folder "
                       "(a flat folder of images is expected)")
    folders.check_all(folders.check_image, files)
    return UnlabeledImages(str(spec), img_size, [p.name for p in files], [str(p) for p in files])


def with_unlabeled(source, unlabeled: UnlabeledImages):
    """``source`` with the unlabeled images appended to its training split, target 255
    (= no label: every kcv loss skips it, the distillation term still applies)."""
    import dataclasses

    spec = source.raw("train").element_spec[1]
    ignore = tf.fill([d if d is not None else source.img_size for d in spec.shape], IGNORE_LABEL)
    ignore = tf.cast(ignore, spec.dtype)

    extra = unlabeled.dataset().map(lambda x: (x, ignore)).cache()  # decoded once

    def raw(split):
        return source.raw("train").concatenate(extra) if split == "train" else source.raw(split)

    return dataclasses.replace(source, raw=raw, num_train=source.num_train + len(unlabeled))
