"""Loaders for image folders on disk (docs/design.md §5), with every bad-data case caught up front.

Classification: ``DATA/train/<class>/*`` + ``DATA/val/<class>/*``, or ``DATA/<class>/*``
split by ``val_split`` (deterministic by seed, per class).
Segmentation: ``DATA/{train,val}/images/NAME.png|jpg`` + ``DATA/{train,val}/masks/NAME.png``;
mask pixel = class index, 255 = ignore; optional ``DATA/classes.txt``.

Everything is checked before training starts, so a bad file is reported by name instead of
failing an hour into ``fit``.
"""

from __future__ import annotations

import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kcv.data.images import exif_orientation, oriented_size
from kcv.errors import KcvError, warn
from kcv.contracts import IGNORE_LABEL

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class ClassificationFolders:
    class_names: list
    train: list = field(default_factory=list)  # [(path, label)]
    val: list = field(default_factory=list)


@dataclass
class SegmentationFolders:
    class_names: list
    train: list = field(default_factory=list)  # [(image_path, mask_path)]
    val: list = field(default_factory=list)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# What TensorFlow's decode_image reads: a file PIL opens in any other format (TIFF, WebP,
# ...) would fail inside `fit`, so it is refused here by name.
TF_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
MASK_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B", "1")


def check_image(path: Path) -> tuple[int, int]:
    """Decode ``path`` exactly as training will (TensorFlow); return its ``(w, h)`` as shown.

    PIL reads the header (format, EXIF orientation) and ``verify()``s the structure;
    TensorFlow then decodes the whole file, so a truncated JPEG, which ``verify()`` passes,
    is caught here instead of inside ``fit``. The size has the EXIF orientation applied
    (:mod:`kcv.data.images`), as the pipeline applies it.
    """
    try:
        with Image.open(path) as im:
            fmt, code = im.format, exif_orientation(im)
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise KcvError(f"{path}: unreadable image ({type(e).__name__})") from None
    if fmt not in TF_FORMATS:
        raise KcvError(f"{path}: {fmt} data; kcv reads PNG, JPEG, BMP and GIF files")
    h, w = _tf_decoded_shape(path)
    return oriented_size((w, h), code)


def _tf_decoded_shape(path: Path) -> tuple[int, int]:
    import tensorflow as tf

    try:
        img = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.UnknownError) as e:
        # TensorFlow wraps the decoder's reason in op bookkeeping: keep the reason only.
        reason = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", (e.message.strip().splitlines() or ["?"])[0]).strip()
        raise KcvError(f"{path}: damaged or truncated image ({reason or type(e).__name__})") from None
    return int(img.shape[0]), int(img.shape[1])


def read_mask(path: Path, num_classes: int | None = None) -> np.ndarray:
    """A mask as ``uint8 [h, w]`` class indices; palette PNGs keep their indices.

    Values are checked before the cast to uint8, so a 16-bit mask holding 257 is refused
    instead of wrapping to class 1.
    """
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise KcvError(f"{path}: masks must be PNG files (lossless), found {im.format} data")
            if im.mode not in MASK_MODES:
                raise KcvError(f"{path}: mask must be single-channel class indices, got mode {im.mode}")
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise KcvError(f"{path}: unreadable mask ({type(e).__name__})") from None
    if arr.size and (arr.min() < 0 or arr.max() > IGNORE_LABEL):
        v = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise KcvError(f"{path}: mask value {v} is not a class index (masks hold 0..254, "
                       f"{IGNORE_LABEL} = ignore)")
    if num_classes is not None:
        bad = arr[(arr >= num_classes) & (arr != IGNORE_LABEL)]
        if bad.size:
            raise KcvError(f"{path}: mask value {int(bad.max())} >= number of classes "
                           f"({num_classes}); use 0..{num_classes - 1} or {IGNORE_LABEL} for ignore")
    return arr.astype(np.uint8)


def each(fn, items, threads: int = 8):
    """``fn(item)`` for every item on ``threads`` threads, results in order, at most
    ``4 * threads`` in flight. ``ThreadPoolExecutor.map`` submits every item at once: a
    Future, its lock and its result per file, all alive until the last file is checked
    (~2 KB a file; 32 MB of peak at 16,000 files, more at ImageNet's 1.28 M). The first
    error, in item order, is raised as ``map`` raises it."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque = deque()
        for item in items:
            if len(pending) >= 4 * threads:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()


def check_all(fn, items) -> None:
    """Run the check ``fn`` on every item (in parallel, :func:`each`), keeping nothing."""
    deque(each(fn, items), maxlen=0)


def sum_all(fn, items, bins: int = 256) -> np.ndarray:
    """The sum of ``fn(item)`` (a ``bins``-long count, e.g. a mask's pixels per value) over
    every item, checked in parallel (:func:`each`) and summed as the results arrive."""
    total = np.zeros(bins, np.int64)
    for counts in each(fn, items):
        total += counts
    return total


def load_classification(root, val_split: float = 0.2, seed: int = 0) -> ClassificationFolders:
    """Scan a classification folder tree and check every image."""
    root = _existing_dir(root)
    _refuse_segmentation_layout(root)
    if (root / "train").is_dir():
        train_dirs = _subdirs(root / "train")
        names = [d.name for d in train_dirs]
        _check_classes(names, root / "train")
        train = _labelled(train_dirs, names)
        val = []
        if (root / "val").is_dir():
            val_dirs = _subdirs(root / "val")
            for d in val_dirs:
                if d.name not in names:
                    raise KcvError(f"{d}: class '{d.name}' is not among the training classes")
            val = _labelled(val_dirs, names)
        if not val:
            raise KcvError(f"{root / 'val'}: no validation images (expected val/<class>/*.png|jpg|bmp)")
    else:
        dirs = _subdirs(root)
        names = [d.name for d in dirs]
        _check_classes(names, root)
        if not 0.0 < val_split < 1.0:
            raise KcvError(f"--val-split {val_split}: must be between 0 and 1")
        train, val = _split(_labelled(dirs, names), val_split, seed)
        if not val or not train:
            raise KcvError(f"{root}: --val-split {val_split:g} leaves the {'validation' if not val else 'training'} "
                           f"split empty (a class needs 2 images to appear in both); add images, "
                           f"or use {root}/train/<class>/ and {root}/val/<class>/")
    check_all(lambda item: check_image(item[0]), train + val)
    return ClassificationFolders(names, train, val)


def _refuse_segmentation_layout(root: Path) -> None:
    # Without this, a classifier pointed at DATA/train/{images,masks} trains on two
    # "classes" called images and masks.
    for base in (root, root / "train"):
        if (base / "images").is_dir() and (base / "masks").is_dir():
            raise KcvError(f"{root}: a segmentation data set ({base / 'images'} and {base / 'masks'}); "
                           "train a segmentation --arch on it (`kcv models --task segmentation`)")


def _existing_dir(root) -> Path:
    root = Path(root)
    if not root.exists():
        raise KcvError(f"{root}: data folder not found")
    if not root.is_dir():
        raise KcvError(f"{root}: not a folder")
    return root


def _check_classes(names, where):
    if not names:
        raise KcvError(f"{where}: empty folder, expected one sub-folder per class")
    if len(names) < 2:
        raise KcvError(f"{where}: found {len(names)} class folder ({names[0]}); need at least 2 classes")


def _labelled(dirs, names):
    items = []
    for d in dirs:
        files = _images_in(d)
        if not files:
            raise KcvError(f"{d}: empty class folder, no .png/.jpg/.bmp images")
        items += [(p, names.index(d.name)) for p in files]
    return items


def _split(items, val_split, seed):
    """Per-class deterministic split so every class appears in validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    labels = sorted({lab for _, lab in items})
    for lab in labels:
        group = [it for it in items if it[1] == lab]
        order = rng.permutation(len(group))
        n_val = max(1, int(round(len(group) * val_split))) if len(group) > 1 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return train, val


def load_segmentation(root) -> SegmentationFolders:
    """Scan a segmentation folder tree; check pairs, sizes and mask values."""
    root = _existing_dir(root)
    names = _read_class_names(root)
    splits = {}
    for split in ("train", "val"):
        images_dir, masks_dir = root / split / "images", root / split / "masks"
        for d in (images_dir, masks_dir):
            if not d.is_dir():
                hint = (" — this looks like a classification data set (one folder per class); "
                        "use a classification --arch" if _subdirs_of(root / split) and not d.exists() else "")
                raise KcvError(f"{d}: folder not found (expected {split}/images and {split}/masks){hint}")
        images = _images_in(images_dir)
        if not images:
            raise KcvError(f"{images_dir}: empty folder, no .png/.jpg/.bmp images")
        pairs = []
        for img in images:
            mask = masks_dir / (img.stem + ".png")
            if not mask.is_file():
                raise KcvError(f"{img}: image without mask (expected {mask})")
            pairs.append((img, mask))
        splits[split] = pairs
    k = len(names) if names else None
    # summed as the checks finish: a list of every mask's 256-bin histogram was 2 KB a file
    counts = {split: sum(each(lambda pair: _check_pair(pair, k), pairs), np.zeros(256, np.int64))
              for split, pairs in splits.items()}
    require_labelled(counts, {split: root / split / "masks" for split in splits})
    if names is None:
        names = _inferred_class_names(root, counts["train"] + counts["val"])
    return SegmentationFolders(names, splits["train"], splits["val"])


def require_labelled(counts: dict, where: dict) -> None:
    """Refuse a split whose masks are all ignore: it would train with loss 0 (or score
    nothing) and say nothing. ``counts``: per split, pixels per mask value (256 bins);
    ``where``: per split, the file or folder the error names."""
    for split, what in (("train", "nothing to train on"), ("val", "nothing to score")):
        if not np.asarray(counts[split])[:IGNORE_LABEL].any():
            raise KcvError(f"{where[split]}: every mask pixel is {IGNORE_LABEL} (ignore); {what}")


def _subdirs_of(folder: Path) -> list[Path]:
    return _subdirs(folder) if folder.is_dir() else []


def _inferred_class_names(root: Path, counts: np.ndarray) -> list:
    """``background, class1, ...`` up to the largest index seen; warns when most are unused."""
    seen = np.flatnonzero(counts[:IGNORE_LABEL])
    n = int(seen.max()) + 1
    if n < 2:
        raise KcvError(f"{root}: every labelled mask pixel is class 0; need at least 2 classes "
                       f"(or list the class names in {root / 'classes.txt'})")
    if len(seen) <= n // 2:
        # One stray value (a 200 in a 0/1 mask) would silently make a 201-class model.
        shown = ", ".join(map(str, seen[:8])) + (", ..." if len(seen) > 8 else "")
        warn(f"{root}: masks use only {len(seen)} of the {n} class indices 0..{n - 1} (seen: {shown}), "
             f"so the model gets {n} classes; check the masks, or name the classes in {root / 'classes.txt'}")
    return ["background"] + [f"class{i}" for i in range(1, n)]


def _read_class_names(root: Path):
    f = root / "classes.txt"
    if not f.is_file():
        return None
    try:
        text = f.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KcvError(f"{f}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                       "save it as UTF-8, one class name per line") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < 2:
        raise KcvError(f"{f}: lists {len(names)} class name(s); need at least 2")
    if len(names) > IGNORE_LABEL:
        raise KcvError(f"{f}: lists {len(names)} classes; masks hold at most {IGNORE_LABEL} (0..254)")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise KcvError(f"{f}: class name '{dup}' is listed twice")
    return names


def _check_pair(pair, num_classes) -> np.ndarray:
    """Check one image/mask pair; return the mask's pixel count per value (256 bins)."""
    img, mask_path = pair
    w, h = check_image(img)
    mask = read_mask(mask_path, num_classes)
    if mask.shape != (h, w):
        raise KcvError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                       f"image size {w}x{h} of {img.name}")
    return np.bincount(mask.reshape(-1), minlength=256)
