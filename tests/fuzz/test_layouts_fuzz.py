"""Damaged trees of every named data layout (VOC, Cityscapes, COCO, CSV) through ``train``
and ``eval`` (issue 17: "covers every data layout").

Each case builds a tiny tree with :mod:`tests.data.layout_trees` (real JPEG/PNG files,
real COCO JSON), damages one thing, and holds the suite's promise: exit 0 with a correct
result, or exit 2 with one ``error:`` line naming the file; no traceback, no run directory
without a trained epoch. Damage is met while the files are checked, before any training,
so a refused case costs no model; the few accepted ones train one step at 32 px.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.data.layout_trees import voc_palette, write_cityscapes, write_coco, write_csv, write_voc
from tests.fuzz.conftest import assert_no_untrained_runs, assert_promise, kcv

pytestmark = pytest.mark.xdist_group("fuzz")

TINY_UNET = ["--arch", "unet", "--model-arg", "base_filters=4", "--model-arg", "depth=2"]
STEP = ["--img-size", "32", "--epochs", "1", "--batch-size", "2", "--cache", "none", "--quiet"]


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _write_json(path, doc):
    path.write_text(json.dumps(doc))
    return path


def _edit_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    return _write_json(path, doc)


def _palette_mask(path, array):
    p = Image.fromarray(array.astype(np.uint8), mode="P")
    p.putpalette(voc_palette())
    p.save(path)
    return path


# --- Pascal VOC --------------------------------------------------------------------------

def _voc(root):
    write_voc(root, w=40, h=32, n_train=2, n_val=1)
    return root


VOC_LIST = "ImageSets/Segmentation/val.txt"
VAL_MASK = "SegmentationClass/2007_000002.png"


def _voc_case(damage):
    def make(root):
        _voc(root)
        return damage(root)
    return make


VOC_CASES = {
    "no-val-list": lambda r: ((r / VOC_LIST).unlink(), r / VOC_LIST)[1],
    "list-names-missing-image": lambda r: ((r / VOC_LIST).write_text("2007_999999\n"),
                                           r / "JPEGImages" / "2007_999999.jpg")[1],
    "list-escapes-the-folder": lambda r: ((r / VOC_LIST).write_text("../../../../etc/passwd\n"), "passwd")[1],
    "empty-list": lambda r: ((r / VOC_LIST).write_text("\n\n"), r / VOC_LIST)[1],
    "list-not-utf8": lambda r: ((r / VOC_LIST).write_bytes(b"2007_00000\xe9\n"), r / VOC_LIST)[1],
    "list-is-a-folder": lambda r: ((r / VOC_LIST).unlink(), (r / VOC_LIST).mkdir(), r / VOC_LIST)[2],
    "truncated-jpeg": lambda r: _truncate(r / "JPEGImages" / "2007_000002.jpg", 0.4),
    "zero-byte-jpeg": lambda r: ((r / "JPEGImages" / "2007_000000.jpg").write_bytes(b""),
                                 r / "JPEGImages" / "2007_000000.jpg")[1],
    "mask-wrong-size": lambda r: _palette_mask(r / VAL_MASK, np.zeros((9, 7))),
    "mask-rgb": lambda r: (Image.new("RGB", (40, 32)).save(r / VAL_MASK), r / VAL_MASK)[1],
    "mask-jpeg-data": lambda r: (Image.new("L", (40, 32)).save(r / VAL_MASK, "JPEG"), r / VAL_MASK)[1],
    "mask-index-30": lambda r: _palette_mask(r / VAL_MASK, np.full((32, 40), 30)),
    "mask-truncated": lambda r: _truncate(r / VAL_MASK, 0.3),
    "val-masks-all-border": lambda r: (_palette_mask(r / VAL_MASK, np.full((32, 40), 255)), r / VOC_LIST)[1],
}


# --- Cityscapes --------------------------------------------------------------------------

def _cs_val_label(root):
    return next(root.glob("gtFine/val/*/*_gtFine_labelIds.png"))


def _cs_labels(root, array, mode=None):
    path = _cs_val_label(root)
    Image.fromarray(array, mode=mode).save(path)
    return path


CS_CASES = {
    "missing-gtfine-file": lambda r: (_cs_val_label(r).unlink(), "lindau_000000_000002_leftImg8bit.png")[1],
    "no-val-folder": lambda r: (shutil.rmtree(r / "leftImg8bit" / "val"), r / "leftImg8bit" / "val")[1],
    "images-without-city-folder": lambda r: ([p.rename(p.parent.parent / p.name)
                                              for p in r.glob("leftImg8bit/val/*/*.png")],
                                             r / "leftImg8bit" / "val")[1],
    "labelid-40": lambda r: _cs_labels(r, np.full((32, 64), 40, np.uint8)),
    "labelids-16bit-300": lambda r: _cs_labels(r, np.full((32, 64), 300, np.uint16)),
    "labelids-color-png": lambda r: _cs_labels(r, np.zeros((32, 64, 3), np.uint8), "RGB"),
    "labelids-wrong-size": lambda r: _cs_labels(r, np.full((8, 8), 7, np.uint8)),
    "labelids-truncated": lambda r: _truncate(_cs_val_label(r), 0.3),
    "val-all-unlabeled": lambda r: (_cs_labels(r, np.zeros((32, 64), np.uint8)), r / "gtFine" / "val")[1],
    "truncated-image": lambda r: _truncate(next(r.glob("leftImg8bit/train/*/*.png")), 0.3),
}


# --- COCO --------------------------------------------------------------------------------

VAL_JSON = "annotations/instances_val2017.json"


def _ann(doc, i=0):
    return doc["annotations"][i]


COCO_CASES = {
    "not-json": lambda r: ((r / VAL_JSON).write_text("{not json"), r / VAL_JSON)[1],
    "json-not-utf8": lambda r: ((r / VAL_JSON).write_bytes(b'{"images": "\xff"}'), r / VAL_JSON)[1],
    "json-is-a-list": lambda r: _write_json(r / VAL_JSON, []),
    "no-val-json": lambda r: ((r / VAL_JSON).unlink(), "instances_val")[1],
    "polygon-odd-length": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(segmentation=[[1, 2, 3, 4, 5]])),
    "polygon-of-strings": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(
        segmentation=[["a", "b", "c", "d", "e", "f"]])),
    "polygon-nan": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(
        segmentation=[[float("nan")] * 8])),
    "segmentation-missing": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).pop("segmentation")),
    "rle-wrong-size": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d, 1)["segmentation"].update(size=[10, 10])),
    "rle-garbage-counts": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d, 1)["segmentation"].update(
        counts="!!!not an rle!!!")),
    "rle-counts-overrun": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d, 1).update(
        segmentation={"size": [48, 64], "counts": [0, 100000]})),
    "unknown-image-id": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(image_id=999)),
    "image-id-a-list": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(image_id=[1])),
    "unknown-category-id": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(category_id=99)),
    "category-id-a-string": lambda r: _edit_json(r / VAL_JSON, lambda d: _ann(d).update(category_id="abc")),
    "category-without-id": lambda r: _edit_json(r / VAL_JSON, lambda d: d["categories"][0].pop("id")),
    "category-id-not-a-number": lambda r: _edit_json(r / VAL_JSON, lambda d: d["categories"][0].update(id="x")),
    "categories-differ": lambda r: _edit_json(r / VAL_JSON, lambda d: d["categories"].pop()),
    "no-categories": lambda r: [_edit_json(r / f"annotations/instances_{s}2017.json",
                                           lambda d: (d.update(categories=[]), d.update(annotations=[])))
                                for s in ("train", "val")][0],
    "duplicate-category-id": lambda r: [_edit_json(r / f"annotations/instances_{s}2017.json",
                                                   lambda d: d["categories"].append({"id": 1, "name": "human"}))
                                        for s in ("train", "val")][0],
    "image-missing-width": lambda r: _edit_json(r / VAL_JSON, lambda d: d["images"][0].pop("width")),
    "image-file-missing": lambda r: _edit_json(r / VAL_JSON, lambda d: d["images"][0].update(file_name="nope.jpg")),
    "file-name-escapes": lambda r: _edit_json(r / VAL_JSON, lambda d: d["images"][0].update(
        file_name="../../../../../../etc/passwd")),
    "truncated-jpeg": lambda r: _truncate(r / "val2017" / "000000000001.jpg", 0.4),
    "image-size-differs": lambda r: _edit_json(r / VAL_JSON, lambda d: d["images"][0].update(height=47)),
    "val-all-crowd": lambda r: _edit_json(r / VAL_JSON, lambda d: d.update(annotations=[
        {"id": i + 1, "image_id": img["id"], "category_id": 1, "iscrowd": 1,
         "segmentation": [[0, 0, 64, 0, 64, 48, 0, 48]]} for i, img in enumerate(d["images"])])),
}
# a case returning the JSON file it edited names that file; these name another one
COCO_NAMES = {"image-file-missing": "nope.jpg", "file-name-escapes": "passwd",
              "image-size-differs": "000000000000.jpg"}


# --- CSV ---------------------------------------------------------------------------------

def _csv_rows(listed, edit):
    rows = listed.read_text().splitlines()
    listed.write_text("\n".join(edit(rows)) + "\n")
    return listed


CSV_CASES = {
    "bad-row": lambda f: _csv_rows(f, lambda rows: rows + ["img/0.png,circle,train,extra"]),
    "missing-column": lambda f: _csv_rows(f, lambda rows: rows + ["img/0.png"]),
    "unknown-split": lambda f: _csv_rows(f, lambda rows: rows + ["img/0.png,circle,test"]),
    "label-only-in-val": lambda f: _csv_rows(f, lambda rows: rows + ["img/1.png,zebra,val"]),
    "empty-label": lambda f: _csv_rows(f, lambda rows: rows + ["img/1.png,,train"]),
    "empty-path": lambda f: _csv_rows(f, lambda rows: rows + [",circle,train"]),
    "path-escapes": lambda f: _csv_rows(f, lambda rows: rows + ["../../../../../../etc/passwd,circle,train"]),
    "path-is-a-folder": lambda f: _csv_rows(f, lambda rows: rows + ["img,circle,train"]),
    "missing-image": lambda f: ((f.parent / "img" / "3.png").unlink(), f.parent / "img" / "3.png")[1],
    "truncated-image": lambda f: _truncate(f.parent / "img" / "4.png", 0.3),
    "not-utf8": lambda f: (f.write_bytes(f.read_bytes() + b"img/1.png,cr\xe8me,train\n"), f)[1],
    "nul-byte": lambda f: (f.write_bytes(f.read_bytes() + b"img/1.png\x00,circle,train\n"), f)[1],
    "empty-file": lambda f: (f.write_text(""), f)[1],
    "header-only": lambda f: (f.write_text("path,label\n"), f)[1],
    "one-label": lambda f: _csv_rows(f, lambda rows: [rows[0]] + [",".join([r.split(",")[0], "circle", r.split(",")[2]])
                                                                  for r in rows[1:]]),
    "no-val-rows": lambda f: _csv_rows(f, lambda rows: [r.replace(",val", ",train") for r in rows]),
    "csv-is-a-folder": lambda f: f.parent / "img",
}
CSV_NAMES = {"label-only-in-val": "zebra", "path-escapes": "passwd", "empty-path": "row",
             "csv-is-a-folder": "img"}


def _build(layout, case, root):
    """``(--data value, what the error line must name)`` of one damaged tree."""
    if layout == "voc":
        _voc(root)
        return f"voc:{root}", VOC_CASES[case](root)
    if layout == "cityscapes":
        write_cityscapes(root)
        return f"cityscapes:{root}", CS_CASES[case](root)
    if layout == "coco":
        write_coco(root)
        named = COCO_CASES[case](root)
        return f"coco:{root}", COCO_NAMES.get(case, named)
    listed = write_csv(root, n=8)
    named = CSV_CASES[case](listed)
    data = named if case == "csv-is-a-folder" else listed
    return f"csv:{data}", CSV_NAMES.get(case, named)


CASES = ([("voc", c) for c in VOC_CASES] + [("cityscapes", c) for c in CS_CASES]
         + [("coco", c) for c in COCO_CASES] + [("csv", c) for c in CSV_CASES])


def _name_of(named):
    return named if isinstance(named, str) else named.name


@pytest.mark.parametrize("layout, case", CASES, ids=[f"{lay}-{c}" for lay, c in CASES])
def test_damaged_layout_trees(layout, case, cls_run, unet_run, tmp_path, capsys):
    """``train`` and ``eval --data`` on each damaged tree: refused by name before training."""
    data, named = _build(layout, case, tmp_path / layout)
    arch = ["--arch", "lenet5"] if layout == "csv" else TINY_UNET
    code, _, err = kcv(["train", *arch, "--data", data, *STEP, "--out", tmp_path / "runs"], capsys)
    assert_promise(code, err, [_name_of(named)], ok=(2,))
    assert_no_untrained_runs(tmp_path / "runs")
    run = cls_run if layout == "csv" else unet_run
    code, _, err = kcv(["eval", run, "--data", data], capsys)
    assert_promise(code, err, [_name_of(named)], ok=(2,))


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    """Spreadsheets save CSV as UTF-8 with a BOM: the header must still be recognised (it
    was read as a row naming the image ``\ufeffpath``)."""
    from kcv.data import layouts

    listed = write_csv(tmp_path / "d", n=8)
    listed.write_bytes("\ufeff".encode() + listed.read_bytes())
    got = layouts.load(f"csv:{listed}", "classification")
    assert got.class_names == ["circle", "square", "triangle"]
    assert [len(got.splits[s]) for s in ("train", "val")] == [6, 2]


def test_coco_string_category_ids_mean_their_numbers(tmp_path):
    """``"category_id": "18"`` (a string, as some exporters write) paints category 18's
    class; it was a ``KeyError`` inside ``fit``, where the masks are read."""
    from kcv.data import layouts

    regions = write_coco(tmp_path / "c")
    for split in ("train", "val"):
        _edit_json(tmp_path / "c" / f"annotations/instances_{split}2017.json",
                   lambda d: [a.update(category_id=str(a["category_id"])) for a in d["annotations"]])
    got = layouts.load(f"coco:{tmp_path / 'c'}", "segmentation")
    assert got.class_names == ["background", "person", "dog"]
    for _, key in got.splits["val"]:
        mask = got.read_mask(key)
        np.testing.assert_array_equal(mask == 2, regions["dog"].astype(bool))
        np.testing.assert_array_equal(mask == 255, regions["crowd"].astype(bool))
