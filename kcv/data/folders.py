"""Loaders for image folders on disk (docs/design.md §5), with every bad-data case caught up front.

Classification: ``DATA/train/<class>/*`` + ``DATA/val/<class>/*``, or ``DATA/<class>/*``
split by ``val_split`` (deterministic by seed, per class).
Segmentation: ``DATA/{train,val}/images/NAME.png|jpg`` + ``DATA/{train,val}/masks/NAME.png``;
mask pixel = class index, 255 = ignore; optional ``DATA/classes.txt``.

Everything is checked before training starts, so a bad file is reported by name instead of
failing an hour into ``fit``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kcv.errors import KcvError
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


def check_image(path: Path) -> tuple[int, int]:
    """Open ``path`` as an image (structure checked, not fully decoded); return ``(w, h)``."""
    try:
        with Image.open(path) as im:
            size = im.size
            im.verify()
        return size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise KcvError(f"{path}: unreadable image ({type(e).__name__})") from None


def read_mask(path: Path, num_classes: int | None = None) -> np.ndarray:
    """A mask as ``uint8 [h, w]`` class indices; palette PNGs keep their indices."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise KcvError(f"{path}: mask must be single-channel class indices, got mode {im.mode}")
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise KcvError(f"{path}: unreadable mask ({type(e).__name__})") from None
    if num_classes is not None:
        bad = arr[(arr >= num_classes) & (arr != IGNORE_LABEL)]
        if bad.size:
            raise KcvError(f"{path}: mask value {int(bad.max())} >= number of classes "
                           f"({num_classes}); use 0..{num_classes - 1} or {IGNORE_LABEL} for ignore")
    return arr.astype(np.uint8)


def _parallel(fn, items):
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fn, items))


def load_classification(root, val_split: float = 0.2, seed: int = 0) -> ClassificationFolders:
    """Scan a classification folder tree and check every image."""
    root = _existing_dir(root)
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
    _parallel(lambda item: check_image(item[0]), train + val)
    return ClassificationFolders(names, train, val)


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
                raise KcvError(f"{d}: folder not found (expected {split}/images and {split}/masks)")
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
    all_pairs = splits["train"] + splits["val"]
    max_values = _parallel(lambda pair: _check_pair(pair, len(names) if names else None), all_pairs)
    if names is None:
        n = max(max_values) + 1
        if n < 2:
            raise KcvError(f"{root}: every mask is 0; need at least 2 classes")
        names = ["background"] + [f"class{i}" for i in range(1, n)]
    return SegmentationFolders(names, splits["train"], splits["val"])


def _read_class_names(root: Path):
    f = root / "classes.txt"
    if not f.is_file():
        return None
    names = [line.strip() for line in f.read_text().splitlines() if line.strip()]
    if len(names) < 2:
        raise KcvError(f"{f}: lists {len(names)} class name(s); need at least 2")
    return names


def _check_pair(pair, num_classes):
    img, mask_path = pair
    w, h = check_image(img)
    mask = read_mask(mask_path, num_classes)
    if mask.shape != (h, w):
        raise KcvError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                       f"image size {w}x{h} of {img.name}")
    valid = mask[mask != IGNORE_LABEL]
    return int(valid.max()) if valid.size else 0
