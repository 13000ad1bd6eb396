"""Damaged data sets and extreme flags over every command that reads user files.

Each case: exit 0, or exit 2 with one ``error:`` line naming the file or flag; no
traceback, no hang (a time limit per case), no run directory without a trained epoch.
Cheap by construction: one LeNet-5 and one U-Net run for the session, 24-32 px images,
damage placed where validation or evaluation meets it before any training.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_classification_folders, write_segmentation_folders
from tests.fuzz.conftest import assert_no_untrained_runs, assert_promise, kcv, tiny_rgb

# One xdist worker trains the session's LeNet-5 and U-Net once for all these cases.
pytestmark = pytest.mark.xdist_group("fuzz")


def _jpeg_bytes(pixels, **kw):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _encoded(fmt, pixels, mode=None):
    buf = io.BytesIO()
    (Image.fromarray(pixels).convert(mode) if mode else Image.fromarray(pixels)).save(buf, fmt)
    return buf.getvalue()


# name -> (file name, bytes or a folder marker); None = a folder with an image's name
IMAGE_DAMAGE = {
    "zero-byte": ("zero.png", lambda: b""),
    "text": ("text.png", lambda: b"this is not an image\n"),
    "truncated-jpeg": ("trunc.jpg", lambda: _jpeg_bytes(tiny_rgb(64, 64))[:900]),
    "truncated-png": ("trunc.png", lambda: _encoded("PNG", tiny_rgb(64, 64))[:200]),
    "tiff-as-png": ("tiff.png", lambda: _encoded("TIFF", tiny_rgb())),
    "gif-as-png": ("gif.png", lambda: _encoded("GIF", tiny_rgb(), "P")),
    "cmyk-jpeg": ("cmyk.jpg", lambda: _encoded("JPEG", tiny_rgb(), "CMYK")),
    "gray16": ("g16.png", lambda: _encoded("PNG", (np.arange(24 * 24).reshape(24, 24) * 97).astype(np.uint16))),
    "one-bit": ("bits.png", lambda: _encoded("PNG", tiny_rgb(), "1")),
    "folder-named-png": ("dir.png", None),
}
CORRUPT = {"zero-byte", "text", "truncated-jpeg", "truncated-png", "tiff-as-png"}


def _damage(folder, kind):
    name, make = IMAGE_DAMAGE[kind]
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    if make is None:
        (path / "inner").mkdir(parents=True)
    else:
        path.write_bytes(make())
    return path


def _names(path, kind):
    return [path] if kind in CORRUPT else []


@pytest.fixture(scope="module")
def clean_cls(tmp_path_factory):
    return write_classification_folders(tmp_path_factory.mktemp("cls") / "data", n=3, size=24)


# Every reader meets several damage kinds, each kind meets the training loader (via eval
# --data, which validates both splits as train does) and one other reader in turn.
READERS = ("predict", "explain", "augment-preview", "export-calib", "self-train")
READ_WITH_PIL = ("predict", "explain", "export-calib")  # PIL reads TIFF: accepted there


def _reader_argv(reader, run, data, folder, tmp_path):
    return {"predict": ["predict", run, folder],
            "explain": ["explain", run, folder, "--out", tmp_path / "cams"],
            "augment-preview": ["augment-preview", "--task", "classification", "--data", data,
                                "--img-size", "32", "--samples", "2", "--out", tmp_path / "p.png"],
            "export-calib": ["export", run, "--int8", "--calib-data", folder],
            "self-train": ["self-train", "--arch", "lenet5", "--data", "shapes:4", "--unlabeled", folder,
                           "--epochs", "1", "--img-size", "32", "--out", tmp_path / "runs",
                           "--quiet"]}[reader]


@pytest.mark.parametrize("kind", sorted(IMAGE_DAMAGE))
def test_damaged_images(kind, clean_cls, cls_run, tmp_path, capsys):
    import shutil

    data = shutil.copytree(clean_cls, tmp_path / "data")
    bad = _damage(data / "val" / "circle", kind)
    code, _, err = kcv(["eval", cls_run, "--data", data], capsys)
    assert_promise(code, err, _names(bad, kind), ok=(2,) if kind in CORRUPT else (0, 2))
    i = sorted(IMAGE_DAMAGE).index(kind)
    for reader in {READERS[i % 5], READERS[(i + 2) % 5]}:
        if kind not in CORRUPT and reader in ("export-calib", "self-train"):
            continue  # accepted files: these would quantize or train (tests/export, tests/train)
        code, _, err = kcv(_reader_argv(reader, cls_run, data, bad.parent, tmp_path), capsys)
        refused = kind in CORRUPT - ({"tiff-as-png"} if reader in READ_WITH_PIL else set())
        assert_promise(code, err, _names(bad, kind) if refused else [], ok=(2,) if refused else (0, 2))
    assert_no_untrained_runs(tmp_path / "runs")


def _mask_png(pixels, mode=None):
    return _encoded("PNG", pixels, mode)


MASK_DAMAGE = {
    "jpeg-as-png": lambda: _jpeg_bytes(np.zeros((32, 32, 3), np.uint8)),
    "rgb": lambda: _mask_png(np.zeros((32, 32, 3), np.uint8)),
    "gray-alpha": lambda: _mask_png(np.zeros((32, 32, 3), np.uint8), "LA"),
    "16bit-300": lambda: _mask_png(np.full((32, 32), 300, np.uint16)),
    "wrong-size": lambda: _mask_png(np.zeros((7, 9), np.uint8)),
    "zero-byte": lambda: b"",
    "truncated": lambda: _mask_png(np.random.default_rng(0).integers(0, 3, (32, 32), dtype=np.uint8))[:60],
    "float-tiff": lambda: _encoded("TIFF", np.zeros((32, 32), np.float32)),
    "value-9": lambda: _mask_png(np.full((32, 32), 9, np.uint8)),
}


@pytest.fixture(scope="module")
def clean_seg(tmp_path_factory):
    return write_segmentation_folders(tmp_path_factory.mktemp("seg") / "data", n=3, size=32)


@pytest.mark.parametrize("kind", sorted(MASK_DAMAGE))
def test_damaged_masks(kind, clean_seg, unet_run, tmp_path, capsys):
    import shutil

    data = shutil.copytree(clean_seg, tmp_path / "data")
    mask = next((data / "val" / "masks").glob("*.png"))
    mask.write_bytes(MASK_DAMAGE[kind]())
    other = [["augment-preview", "--data", data, "--img-size", "32", "--samples", "2", "--out", tmp_path / "p.png"],
             ["train", "--arch", "unet", "--data", data, "--out", tmp_path / "runs", "--quiet"]]
    for argv in (["eval", unet_run, "--data", data], other[sorted(MASK_DAMAGE).index(kind) % 2]):
        code, _, err = kcv(argv, capsys)
        assert_promise(code, err, [mask], ok=(2,))
    assert_no_untrained_runs(tmp_path / "runs")


LAYOUTS = {
    "empty": lambda r: r.mkdir(),
    "file-not-folder": lambda r: r.write_text("x"),
    "train-is-a-file": lambda r: (r.mkdir(), (r / "train").write_text("x")),
    "one-class": lambda r: (r.mkdir(), (r / "a").mkdir(), Image.fromarray(tiny_rgb()).save(r / "a" / "x.png")),
    "empty-class": lambda r: (write_classification_folders(r, n=3, size=24), (r / "train" / "empty").mkdir()),
    "val-class-unknown": lambda r: (write_classification_folders(r, n=3, size=24),
                                    (r / "val" / "zebra").mkdir(),
                                    Image.fromarray(tiny_rgb()).save(r / "val" / "zebra" / "z.png")),
    "segmentation-layout": lambda r: write_segmentation_folders(r, n=3, size=24),
    "masks-is-a-file": lambda r: (write_segmentation_folders(r, n=3, size=24),
                                  shutil_rmtree(r / "val" / "masks"), (r / "val" / "masks").write_text("x")),
    "classes-txt-folder": lambda r: (write_segmentation_folders(r, n=3, size=24, classes_txt=False),
                                     (r / "classes.txt").mkdir()),
    "classes-txt-one-name": lambda r: (write_segmentation_folders(r, n=3, size=24),
                                       (r / "classes.txt").write_text("only\n")),
}


def shutil_rmtree(path):
    import shutil

    shutil.rmtree(path)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_data_layouts(layout, task, tmp_path, capsys):
    """Both tasks' loaders on each odd layout (augment-preview: the loaders without a model)."""
    root = tmp_path / "data"
    LAYOUTS[layout](root)
    code, _, err = kcv(["augment-preview", "--task", task, "--data", root, "--img-size", "24",
                        "--samples", "1", "--out", tmp_path / "p.png"], capsys)
    assert_promise(code, err, [root])


TRAIN = ["train", "--arch", "lenet5", "--data", "shapes:4", "--epochs", "1", "--img-size", "32",
         "--batch-size", "4", "--quiet"]
REFUSED_FLAGS = [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", str(10**12)], "--batch-size"), (["--img-size", "0"], "--img-size"),
    (["--img-size", str(10**9)], "--img-size"), (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"),
    (["--lr", "1e999"], "--lr"), (["--seed", "-1"], "--seed"), (["--seed", str(2**40)], "--seed"),
    (["--warmup-epochs", "1e9"], "--warmup-epochs"), (["--momentum", "2"], "--momentum"),
    (["--weight-decay", "-1"], "--weight-decay"), (["--label-smoothing", "1"], "--label-smoothing"),
    (["--patience", "0"], "--patience"), (["--steps-per-execution", "0"], "--steps-per-execution"),
    (["--model-arg", "fc_width=-5"], "fc_width"), (["--model-arg", "dropout=inf"], "dropout"),
    (["--model-arg", "nope=1"], "nope"), (["--alpha", "7", "--teacher", "x"], "--"),
]


@pytest.mark.parametrize("args, flag", REFUSED_FLAGS, ids=[" ".join(a)[:30] for a, _ in REFUSED_FLAGS])
def test_extreme_train_flags(args, flag, tmp_path, capsys):
    code, _, err = kcv(TRAIN + ["--out", tmp_path / "runs", *args], capsys, seconds=90)
    assert_promise(code, err, [flag], ok=(2,))
    assert_no_untrained_runs(tmp_path / "runs")


def test_huge_epoch_count_starts_at_once_and_stops_cleanly(tmp_path, capsys):
    """``--epochs 10**12`` (item 9: once a 10-minute silence) trains from the first second;
    ``--patience 1`` at an ``--lr`` too small to change a prediction bounds it to 2 epochs."""
    code, _, err = kcv(TRAIN[:5] + ["--epochs", str(10**12)] + TRAIN[7:] +
                       ["--out", tmp_path / "runs", "--name", "huge", "--patience", "1", "--lr", "1e-9"],
                       capsys, seconds=90)
    assert_promise(code, err, ok=(0,))
    run = tmp_path / "runs" / "huge"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["epochs"] == 2, metrics
    assert json.loads((run / "config.json").read_text())["epochs"] == 10**12


OTHER_FLAGS = [
    (["predict", "{cls}", "{img}", "--top-k", "0"], "--top-k"),
    (["export", "{cls}", "--samples", "0"], "--samples"),
    (["export", "{cls}", "--int8", "--calib-samples", "-3"], "--calib-samples"),
    (["export", "{cls}", "--dynamic", "--max-drop", "-1"], "--max-drop"),
    (["export", "{cls}", "--onnx", "--opset", "99"], "--opset"),
    (["explain", "{cls}", "{img}", "--alpha", "2"], "--alpha"),
    (["explain", "{cls}", "{img}", "--class", "99"], "--class"),
    (["eval", "{cls}", "--batch-size", "0"], "--batch-size"),
    (["augment-preview", "--samples", "0"], "--samples"),
    (["augment-preview", "--img-size", str(10**6)], "--img-size"),
    (["self-train", "--arch", "lenet5", "--rounds", "0"], "--rounds"),
    (["self-train", "--arch", "lenet5", "--threshold", "2"], "--threshold"),
    # models built from flags are planned first (kcv.models.feasibility), never allocated
    (["self-train", "--arch", "lenet5", "--img-size", "100000", "--data", "shapes:4", "--unlabeled", "{tmp}"],
     "--img-size"),
    (["info", "lenet5", "--img-size", "100000", "--no-layers"], "--img-size"),
    (["info", "unet", "--model-arg", "depth=99", "--no-layers"], "depth=99"),
    (["info", "unet", "--img-size", "100000", "--no-layers", "--draw", "--out", "{tmp}/rf.png"], "--img-size"),
]


@pytest.mark.parametrize("argv, flag", OTHER_FLAGS, ids=[" ".join(a[:1] + a[2:])[:30] for a, _ in OTHER_FLAGS])
def test_extreme_flags_of_other_commands(argv, flag, cls_run, tmp_path, capsys):
    """Each refused by name: ``kcv info lenet5 --img-size 100000`` was an out-of-memory
    traceback (25 TB of weights), ``kcv info unet --model-arg depth=99`` a segfault."""
    img = tmp_path / "a.png"
    Image.fromarray(tiny_rgb(32, 32)).save(img)
    argv = [a.format(cls=cls_run, img=img, tmp=tmp_path) for a in argv]
    code, _, err = kcv(argv + (["--out", tmp_path / "x"] if argv[0] == "self-train" else []), capsys)
    assert_promise(code, err, [flag], ok=(2,))


def test_info_describes_a_huge_input_whose_weights_fit(capsys):
    """Not over-refused: ``kcv info`` works from shapes, so ResNet-50 at 100,000 px (25.6 M
    weights) is described, its last feature map 100000/32 = 3125 px."""
    code, out, err = kcv(["info", "resnet50", "--img-size", "100000", "--no-layers"], capsys)
    assert_promise(code, err, ok=(0,))
    assert "25,610,152" in out and "(3125, 3125, 2048)" in out, out
