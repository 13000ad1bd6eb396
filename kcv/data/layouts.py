"""The data layouts ``--data`` understands, each checked file by file before training.

- ``folders``: kcv's class folders and ``images/``+``masks/`` folders (:mod:`kcv.data.folders`).
- ``voc``: Pascal VOC 2012 (Everingham et al. 2010): ``JPEGImages/``, palette PNGs in
  ``SegmentationClass/`` (255 = object border, ignored), ``ImageSets/Segmentation/{train,val}.txt``.
- ``cityscapes`` (Cordts et al. 2016): ``leftImg8bit/{train,val}/CITY/*_leftImg8bit.png`` and
  ``gtFine/{train,val}/CITY/*_gtFine_labelIds.png``, mapped to the 19 training IDs (others 255).
- ``coco`` (Lin et al. 2014): ``annotations/instances_{train,val}*.json``; polygons and RLE
  rasterised to semantic masks with pycocotools (crowd regions 255); classes from the file.
- ``csv``: a classification list, ``path,label`` per row (optional third column
  ``train``/``val``; otherwise split by ``--val-split``), paths relative to the file.

Name the layout (``voc:PATH``) or let :func:`detect` recognise it from the folder. Every
layout yields a :class:`Listing`; a bad file is one ``KcvError`` naming it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from kcv.contracts import IGNORE_LABEL
from kcv.data import folders
from kcv.errors import KcvError

SEGMENTATION_LAYOUTS = ("voc", "cityscapes", "coco")
LAYOUTS = ("folders", "csv") + SEGMENTATION_LAYOUTS

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
# Cityscapes' 19 evaluated classes, by labelId (cityscapesScripts helpers/labels.py).
CITYSCAPES_TRAIN_IDS = {7: "road", 8: "sidewalk", 11: "building", 12: "wall", 13: "fence", 17: "pole",
                        19: "traffic light", 20: "traffic sign", 21: "vegetation", 22: "terrain",
                        23: "sky", 24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus",
                        31: "train", 32: "motorcycle", 33: "bicycle"}
CITYSCAPES_LUT = np.full(256, IGNORE_LABEL, np.uint8)
CITYSCAPES_LUT[list(CITYSCAPES_TRAIN_IDS)] = np.arange(len(CITYSCAPES_TRAIN_IDS))


class Files:
    """One split as two NumPy arrays, no Python object per file: ``paths`` and ``targets``
    (int32 class indices, or keys for ``read_mask``), strings as the bytes ``os.fsencode``
    makes of them.

    A split held as ``[(PosixPath, int)]`` tuples costs ~0.5 KB a file that lives as long as
    the run (0.6 GB at ImageNet's 1.28 M files); here a file costs its path's bytes and a
    label (``tests/data/test_stream.py`` holds it to that). Iterating gives ``(path str,
    target)`` pairs, made on the fly.
    """

    def __init__(self, pairs, masks: bool):
        pairs = list(pairs)
        self.paths = np.array([os.fsencode(str(p)) for p, _ in pairs], dtype=bytes)
        self.targets = (np.array([os.fsencode(str(t)) for _, t in pairs], dtype=bytes) if masks
                        else np.array([int(t) for _, t in pairs], np.int32))

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self):
        paths = (os.fsdecode(p) for p in self.paths.tolist())
        targets = self.targets.tolist()
        if self.targets.dtype.kind == "S":
            targets = (os.fsdecode(t) for t in targets)
        return zip(paths, targets)


@dataclass
class Listing:
    """A data set as files: class names and per split its :class:`Files` (given as
    ``[(image path, target)]``); a target is a class index, or a key that ``read_mask``
    turns into ``uint8 [h, w]`` class indices."""

    task: str
    spec: str
    class_names: list
    splits: dict = field(default_factory=dict)
    read_mask: Callable[[str], np.ndarray] | None = None

    def __post_init__(self):
        self.splits = {k: v if isinstance(v, Files) else Files(v, self.read_mask is not None)
                       for k, v in self.splits.items()}

    def decoded_bytes(self, size: int | None) -> int:
        """Bytes of the decoded set (both splits; images + masks) at ``size`` (``None``: each
        image's own size, read from the file headers)."""
        per_pixel = 3 + (self.read_mask is not None)
        n = sum(len(split) for split in self.splits.values())
        if size is not None:
            return n * size * size * per_pixel
        paths = (p for split in self.splits.values() for p, _ in split)
        return sum(w * h * per_pixel for w, h in folders.each(_header_size, paths))


def _header_size(path):
    with Image.open(path) as im:
        return im.size


def detect(path: Path) -> str:
    """The layout of ``path`` from what it holds (``folders`` when nothing else fits)."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return "csv"
    if path.is_dir():
        if _voc_root(path) is not None:
            return "voc"
        if (path / "leftImg8bit").is_dir() and (path / "gtFine").is_dir():
            return "cityscapes"
        if list((path / "annotations").glob("instances_*.json")):
            return "coco"
    return "folders"


def load(data: str, task: str, seed: int = 0, val_split: float = 0.2) -> Listing:
    """The :class:`Listing` of ``--data`` (``LAYOUT:PATH`` or a path), checked file by file."""
    m = re.fullmatch(r"([a-z]+):(.+)", data)
    if m and m.group(1) in LAYOUTS:
        layout, path = m.group(1), Path(m.group(2))
    else:
        layout, path = None, Path(data)
    if not path.exists():
        raise KcvError(f"{path}: data {'file' if layout == 'csv' else 'folder'} not found")
    layout = layout or detect(path)
    wanted = "classification" if layout == "csv" else "segmentation" if layout in SEGMENTATION_LAYOUTS else task
    if wanted != task:
        raise KcvError(f"--data {data}: a {wanted} layout ({layout}); this architecture does {task}")
    loader = {"folders": _folders, "csv": _csv, "voc": _voc, "cityscapes": _cityscapes, "coco": _coco}[layout]
    listing = loader(path, task, seed, val_split) if layout in ("folders", "csv") else loader(path)
    listing.spec = data
    return listing


def _folders(root: Path, task: str, seed: int, val_split: float) -> Listing:
    if task == "classification":
        found = folders.load_classification(root, val_split=val_split, seed=seed)
        return Listing(task, str(root), found.class_names, {"train": found.train, "val": found.val})
    found = folders.load_segmentation(root)
    return Listing(task, str(root), found.class_names, {"train": found.train, "val": found.val},
                   read_mask=lambda key: folders.read_mask(Path(key)))


# --- CSV list (classification) -------------------------------------------------------------

def _csv(path: Path, task: str, seed: int, val_split: float) -> Listing:
    if not path.is_file():
        raise KcvError(f"{path}: not a file (csv: expects a list of path,label rows)")
    try:
        # utf-8-sig: spreadsheets write a byte order mark, which would hide the header
        rows = list(csv.reader(path.read_bytes().decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise KcvError(f"{path}: not a readable CSV list ({type(e).__name__})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]  # header
    entries = []
    for n, row in enumerate(rows, 1):
        if len(row) not in (2, 3) or (len(row) == 3 and row[2].strip() not in ("train", "val")):
            raise KcvError(f"{path}: row {n} '{','.join(row)}': expected path,label or path,label,train|val")
        if not row[0].strip() or not row[1].strip():
            raise KcvError(f"{path}: row {n} '{','.join(row)}': empty {'path' if not row[0].strip() else 'label'}")
        image = (path.parent / row[0].strip())
        if not image.is_file():
            raise KcvError(f"{path}: row {n}: image {image} not found")
        entries.append((image, row[1].strip(), row[2].strip() if len(row) == 3 else None))
    if not entries:
        raise KcvError(f"{path}: lists no images (expected path,label rows)")
    names = sorted({label for _, label, _ in entries})
    if len(names) < 2:
        raise KcvError(f"{path}: every row has the label '{names[0]}'; need at least 2 classes")
    items = [(p, names.index(label)) for p, label, _ in entries]
    if all(s is not None for _, _, s in entries):
        train = [it for it, (_, _, s) in zip(items, entries) if s == "train"]
        val = [it for it, (_, _, s) in zip(items, entries) if s == "val"]
        untrained = sorted(set(names) - {names[lab] for _, lab in train})
        if train and untrained:
            # a class seen only in validation: the model would get an output it never learns
            raise KcvError(f"{path}: label '{untrained[0]}' has no train row (only val rows); "
                           "fix the label or add training images of it")
    else:
        if not 0.0 < val_split < 1.0:
            raise KcvError(f"--val-split {val_split}: must be between 0 and 1")
        train, val = folders._split(items, val_split, seed)
    for split, part in (("training", train), ("validation", val)):
        if not part:
            raise KcvError(f"{path}: no {split} images")
    folders.check_all(lambda it: folders.check_image(it[0]), train + val)
    return Listing("classification", str(path), names, {"train": train, "val": val})


# --- Pascal VOC 2012 -------------------------------------------------------------------------

def _voc_root(path: Path) -> Path | None:
    for root in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
            return root
    return None


def _voc(path: Path) -> Listing:
    root = _voc_root(path)
    if root is None:
        raise KcvError(f"{path}: not a Pascal VOC folder (expected JPEGImages/ and SegmentationClass/)")
    splits = {}
    for split in ("train", "val"):
        ids_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not ids_file.is_file():
            what = "a folder, not a file" if ids_file.is_dir() else "not found"
            raise KcvError(f"{ids_file}: {what} (VOC lists its {split} images there)")
        ids = [line.strip() for line in _read_text(ids_file).splitlines() if line.strip()]
        if not ids:
            raise KcvError(f"{ids_file}: lists no images")
        pairs = []
        for name in ids:
            image, mask = root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png"
            for f in (image, mask):
                if not f.is_file():
                    raise KcvError(f"{f}: not found (listed in {ids_file})")
            pairs.append((image, mask))
        splits[split] = pairs
    k = len(VOC_CLASSES)
    counts = {split: folders.sum_all(lambda pair: folders._check_pair(pair, k), pairs)
              for split, pairs in splits.items()}
    folders.require_labelled(counts, {s: root / "ImageSets" / "Segmentation" / f"{s}.txt" for s in splits})
    return Listing("segmentation", str(path), list(VOC_CLASSES), splits,
                   read_mask=lambda key: folders.read_mask(Path(key)))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KcvError(f"{path}: not UTF-8 text") from None


# --- Cityscapes ------------------------------------------------------------------------------

def read_cityscapes_mask(path) -> np.ndarray:
    """A ``*_gtFine_labelIds.png`` as training IDs 0..18, every other label 255."""
    return CITYSCAPES_LUT[folders.read_mask(Path(path))]


def _cityscapes(root: Path) -> Listing:
    splits = {}
    for split in ("train", "val"):
        images_dir = root / "leftImg8bit" / split
        if not images_dir.is_dir():
            raise KcvError(f"{images_dir}: folder not found (expected leftImg8bit/{split}/CITY/*_leftImg8bit.png)")
        images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise KcvError(f"{images_dir}: no */*_leftImg8bit.png images")
        pairs = []
        for image in images:
            stem = image.name[: -len("_leftImg8bit.png")]
            mask = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
            if not mask.is_file():
                raise KcvError(f"{image}: image without labels (expected {mask})")
            pairs.append((image, mask))
        splits[split] = pairs
    counts = {split: folders.sum_all(_check_cityscapes_pair, pairs)
              for split, pairs in splits.items()}
    # labelIds outside the 19 evaluated classes all become 255: a set of only those trains on nothing
    folders.require_labelled(counts, {split: root / "gtFine" / split for split in splits})
    return Listing("segmentation", str(root), list(CITYSCAPES_TRAIN_IDS.values()), splits,
                   read_mask=read_cityscapes_mask)


def _check_cityscapes_pair(pair):
    image, mask_path = pair
    w, h = folders.check_image(image)
    mask = folders.read_mask(mask_path)
    if mask.shape != (h, w):
        raise KcvError(f"{mask_path}: label size {mask.shape[1]}x{mask.shape[0]} differs from "
                       f"image size {w}x{h} of {image.name}")
    if mask.max(initial=0) > 33:
        raise KcvError(f"{mask_path}: labelId {int(mask.max())} is not a Cityscapes label (0..33)")
    return np.bincount(CITYSCAPES_LUT[mask].reshape(-1), minlength=256)


# --- COCO ------------------------------------------------------------------------------------

class _CocoMasks:
    """Semantic masks of COCO images: each annotation painted with its class index in file
    order (polygons and RLE decoded by pycocotools), crowd regions 255."""

    def __init__(self):
        self.images: dict = {}  # key -> (h, w, [annotations], annotation file)
        self.classes: dict = {}  # category id -> class index (1..K; 0 = background)

    def __call__(self, key: str) -> np.ndarray:
        h, w, anns, path = self.images[key]
        out = np.zeros((h, w), np.uint8)
        for ann in anns:
            m = _rasterise(ann["segmentation"], h, w, path, ann.get("id"))
            out[m] = IGNORE_LABEL if ann.get("iscrowd") else self.classes[ann["category_id"]]
        return out


def _rasterise(seg, h: int, w: int, path: Path, ann_id) -> np.ndarray:
    """One annotation's region as a bool ``[h, w]``; a damaged RLE is one line naming it
    (pycocotools raises ``ValueError``; an RLE of another size would not fit the image)."""
    from pycocotools import mask as rle

    try:
        if isinstance(seg, list):  # polygons
            m = rle.decode(rle.merge(rle.frPyObjects(seg, h, w)))
        elif isinstance(seg["counts"], list):  # uncompressed RLE
            m = rle.decode(rle.frPyObjects(seg, h, w))
        else:
            m = rle.decode(seg)
    except (ValueError, TypeError, OverflowError) as e:
        raise KcvError(f"{path}: annotation {ann_id}: damaged segmentation ({e})") from None
    if m.shape[:2] != (h, w):
        raise KcvError(f"{path}: annotation {ann_id}: RLE size {m.shape[1]}x{m.shape[0]} differs from "
                       f"its image's {w}x{h}")
    return m.astype(bool)


def _coco(root: Path) -> Listing:
    files = {f.stem[len("instances_"):]: f for f in sorted((root / "annotations").glob("instances_*.json"))}
    names = {split: next((s for s in files if s.startswith(split)), None) for split in ("train", "val")}
    for split, name in names.items():
        if name is None:
            raise KcvError(f"{root / 'annotations'}: no instances_{split}*.json")
    masks, categories, splits = _CocoMasks(), None, {}
    for split, name in names.items():
        doc = _read_json(files[name])
        cats = _coco_categories(files[name], doc["categories"])
        if categories is None:
            categories = cats
            masks.classes = {cid: i + 1 for i, (cid, _) in enumerate(cats)}
        elif cats != categories:
            raise KcvError(f"{files[name]}: categories differ from {files[names['train']]}")
        splits[split] = _coco_split(root, name, files[name], doc, masks)
    counts = {split: folders.sum_all(lambda it: _check_coco_image(it, masks), items)
              for split, items in splits.items()}
    folders.require_labelled(counts, {split: files[name] for split, name in names.items()})
    return Listing("segmentation", str(root), ["background"] + [n for _, n in categories], splits,
                   read_mask=masks)


def _coco_categories(path: Path, entries: list) -> list:
    """``[(id, name)]`` sorted by id; ids are integers, each once."""
    try:
        cats = sorted((_int_id(c["id"]), str(c["name"])) for c in entries)
    except (KeyError, TypeError, ValueError):
        raise KcvError(f"{path}: a category without an integer 'id' and a 'name' "
                       "(expected {'id': 1, 'name': 'person'})") from None
    if not cats:
        raise KcvError(f"{path}: lists no categories; need at least one besides the background")
    ids = [cid for cid, _ in cats]
    dup = next((cid for i, cid in enumerate(ids) if cid in ids[:i]), None)
    if dup is not None:
        raise KcvError(f"{path}: category id {dup} is listed twice")
    return cats


def _int_id(value) -> int:
    """A COCO id: an integer, or a string of one (some exporters write ``"1"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or int(value) != float(value):
        raise ValueError(value)
    return int(value)


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KcvError(f"{path}: not valid JSON ({type(e).__name__})") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in keys):
        raise KcvError(f"{path}: expected COCO instances (lists 'images', 'annotations', 'categories')")
    return doc


def _coco_split(root, name, path, doc, masks) -> list:
    folder = next((d for d in (root / name, root / "images" / name) if d.is_dir()), None)
    if folder is None:
        raise KcvError(f"{root / name}: image folder of {path.name} not found")
    images, items = {}, []
    for img in doc["images"]:
        try:
            image_id, file = _int_id(img["id"]), folder / img["file_name"]
            if image_id in images:
                raise KcvError(f"{path}: image id {image_id} is listed twice")
            images[image_id] = (f"{name}:{image_id}", int(img["height"]), int(img["width"]))
        except (KeyError, TypeError, ValueError):
            raise KcvError(f"{path}: image entry {str(img)[:80]}: needs an integer id, file_name, "
                           "width and height") from None
        if not file.is_file():
            raise KcvError(f"{file}: not found (listed in {path})")
        items.append((file, images[image_id][0]))
    if not items:
        raise KcvError(f"{path}: lists no images")
    anns: dict = {}
    for ann in doc["annotations"]:
        ann_id = ann.get("id") if isinstance(ann, dict) else str(ann)[:40]
        try:
            category, image_id = _int_id(ann["category_id"]), _int_id(ann["image_id"])
            _check_segmentation(ann["segmentation"])
        except (KeyError, TypeError, ValueError):
            raise KcvError(f"{path}: annotation {ann_id}: malformed (needs integer category_id and "
                           "image_id, and a list of polygons of finite x,y pairs or an RLE)") from None
        if category not in masks.classes:
            raise KcvError(f"{path}: annotation {ann_id}: unknown category_id {category}")
        if image_id not in images:
            # its region would silently be background: the file and its images disagree
            raise KcvError(f"{path}: annotation {ann_id}: image_id {image_id} is not among its images")
        anns.setdefault(image_id, []).append({**ann, "category_id": category})
    for image_id, (key, h, w) in images.items():
        masks.images[key] = (h, w, anns.get(image_id, []), path)
    return items


def _check_segmentation(seg) -> None:
    if isinstance(seg, list):
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            raise ValueError("polygon")
        if not all(math.isfinite(float(v)) for p in seg for v in p):
            raise ValueError("polygon")  # NaN would rasterise to nothing, silently
    elif not ("counts" in seg and len(seg["size"]) == 2):
        raise ValueError("rle")


def _check_coco_image(item, masks) -> np.ndarray:
    """Check one image against its entry and rasterise its annotations as training will;
    return the mask's pixel count per value (256 bins)."""
    file, key = item
    w, h = folders.check_image(file)
    if (h, w) != masks.images[key][:2]:
        raise KcvError(f"{file}: image size {w}x{h} differs from the {masks.images[key][1]}x"
                       f"{masks.images[key][0]} its annotation file states")
    return np.bincount(masks(key).reshape(-1), minlength=256)
