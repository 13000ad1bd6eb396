"""Tiny data sets in the real layouts of the field, in their real file formats.

Pascal VOC 2012 (JPEGs, palette PNG masks with a 255 border), Cityscapes (8-bit labelId
PNGs), COCO (instances JSON with a polygon, an RLE and a crowd region) and a CSV list.
Each builder returns what the masks must read back as, so tests check pixel by pixel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from kcv.data import shapes


def voc_palette() -> list:
    """VOC's colour map (the devkit's bit-interleaving of the class index)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _photo(i: int, w: int, h: int, split: str = "train"):
    """A shapes image and mask cut to ``w`` x ``h`` (photos are rarely square)."""
    img, mask = shapes.make_sample(0, split, i, max(w, h), "segmentation")
    return img[:h, :w], mask[:h, :w]


def write_voc(root: Path, w: int = 80, h: int = 60, n_train: int = 4, n_val: int = 2) -> dict:
    """``root/JPEGImages``, ``SegmentationClass`` (palette PNG), ``ImageSets/Segmentation``.
    Shapes become person (15), cat (8) and dog (12); a 1-px 255 border rings each object,
    as in VOC. Returns ``{id: mask}``."""
    to_voc = np.array([0, 15, 8, 12], np.uint8)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    masks, ids = {}, {"train": [], "val": []}
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        name = f"2007_{i:06d}"
        img, m = _photo(i, w, h)
        m = to_voc[m]
        edge = np.zeros_like(m, bool)
        edge[:, 1:] |= m[:, 1:] != m[:, :-1]
        edge[1:, :] |= m[1:, :] != m[:-1, :]
        m[edge] = 255
        Image.fromarray(img).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        p = Image.fromarray(m, mode="P")
        p.putpalette(voc_palette())
        p.save(root / "SegmentationClass" / f"{name}.png")
        masks[name] = m
        ids[split].append(name)
    for split, names in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return masks


def write_cityscapes(root: Path, w: int = 64, h: int = 32) -> dict:
    """Two train and one val frame in ``leftImg8bit``/``gtFine``; labelIds in stripes of
    0 (unlabeled), 4 (static), 7 (road), 8 (sidewalk), 26 (car), 33 (bicycle). Returns
    ``{image path: labelIds}``."""
    ids = np.array([0, 4, 7, 8, 26, 33], np.uint8)
    out = {}
    for i, (split, city) in enumerate([("train", "aachen"), ("train", "bremen"), ("val", "lindau")]):
        stem = f"{city}_000000_{i:06d}"
        img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        img, _ = _photo(i, w, h)
        labels = ids[(np.arange(w)[None, :] // 8 + np.arange(h)[:, None] // 8 + i) % len(ids)]
        Image.fromarray(img).save(img_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(labels, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
        out[str(img_dir / f"{stem}_leftImg8bit.png")] = labels
    return out


def write_coco(root: Path, w: int = 64, h: int = 48) -> dict:
    """``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/*.jpg``.

    Categories person (id 1) and dog (id 18) become classes 1 and 2. Every image holds a
    person polygon (the rectangle x 8..40, y 8..24), a dog RLE (rows 30..39, columns
    44..59, compressed as COCO stores it) and a crowd RLE (rows 0..3, columns 0..9).
    Returns the dog and crowd masks."""
    from pycocotools import mask as rle

    dog = np.zeros((h, w), np.uint8)
    dog[30:40, 44:60] = 1
    crowd = np.zeros((h, w), np.uint8)
    crowd[0:4, 0:10] = 1

    def encoded(m):
        r = rle.encode(np.asfortranarray(m))
        return {"size": r["size"], "counts": r["counts"].decode()}

    (root / "annotations").mkdir(parents=True)
    for split, n in (("train2017", 3), ("val2017", 2)):
        (root / split).mkdir()
        images, anns = [], []
        for i in range(n):
            img, _ = _photo(i, w, h)
            Image.fromarray(img).save(root / split / f"{i:012d}.jpg", quality=95)
            images.append({"id": 100 + i, "file_name": f"{i:012d}.jpg", "width": w, "height": h})
            anns += [{"id": 3 * i + 1, "image_id": 100 + i, "category_id": 1, "iscrowd": 0,
                      "segmentation": [[8, 8, 40, 8, 40, 24, 8, 24]]},
                     {"id": 3 * i + 2, "image_id": 100 + i, "category_id": 18, "iscrowd": 0,
                      "segmentation": encoded(dog)},
                     {"id": 3 * i + 3, "image_id": 100 + i, "category_id": 1, "iscrowd": 1,
                      "segmentation": encoded(crowd)}]
        doc = {"images": images, "annotations": anns,
               "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return {"dog": dog, "crowd": crowd}


def write_csv(root: Path, split_column: bool = True, n: int = 12) -> Path:
    """``root/list.csv`` (header ``path,label[,split]``) over ``root/img/*.png``."""
    (root / "img").mkdir(parents=True)
    images, labels = shapes.make_split(n, 32, "classification")
    rows = ["path,label,split" if split_column else "path,label"]
    for i, (img, lab) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(root / "img" / f"{i}.png")
        row = f"img/{i}.png,{shapes.SHAPE_NAMES[lab]}"
        rows.append(row + ("," + ("val" if i % 4 == 0 else "train") if split_column else ""))
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root / "list.csv"
