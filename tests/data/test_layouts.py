"""The layouts of the field (Pascal VOC, Cityscapes, COCO, CSV lists): masks read back
pixel by pixel as the layout means them, one training step on each, and one error line
naming the file for each kind of damage."""

import json

import numpy as np
import pytest
from PIL import Image

from kcv.evaluation import scores
from kcv.data import layouts
from kcv.data.crop import Crop
from kcv.data.pipeline import load_data
from tests.conftest import run_cli
from tests.data.layout_trees import write_cityscapes, write_coco, write_csv, write_voc

TINY_UNET = ["--arch", "unet", "--model-arg", "base_filters=4", "--model-arg", "depth=2"]


def own_size_masks(src, split="val"):
    return [y.numpy() for _, y in src.raw(split)]


def test_voc_palette_masks_keep_their_indices_and_the_border_is_ignored(tmp_path):
    masks = write_voc(tmp_path / "voc")
    src = load_data(f"voc:{tmp_path / 'voc'}", "segmentation", 32, crop=Crop(32))
    assert src.class_names == list(layouts.VOC_CLASSES) and (src.num_train, src.num_val) == (4, 2)
    for got, want in zip(own_size_masks(src), [masks["2007_000004"], masks["2007_000005"]]):
        np.testing.assert_array_equal(got, want)  # 60x80, palette indices, 255 border
        assert (got == 255).any() and set(np.unique(got)) <= {0, 8, 12, 15, 255}
        # the border takes no part in the scores
        assert scores.confusion_matrix(got.astype(np.int64), np.zeros_like(got, np.int64), 21).sum() \
            == (got != 255).sum()
    assert layouts.detect(tmp_path / "voc") == "voc"


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    labels = write_cityscapes(tmp_path / "cs")
    src = load_data(str(tmp_path / "cs"), "segmentation", 32, crop=Crop(32))  # recognised
    assert len(src.class_names) == 19 and src.class_names[13] == "car"
    got = own_size_masks(src)[0]
    ids = labels[next(k for k in labels if "lindau" in k)]
    want = {0: 255, 4: 255, 7: 0, 8: 1, 26: 13, 33: 18}
    for label_id, train_id in want.items():
        assert (got[ids == label_id] == train_id).all(), label_id
    assert set(np.unique(got)) == {0, 1, 13, 18, 255}


def test_coco_polygon_and_rle_land_where_they_should(tmp_path):
    regions = write_coco(tmp_path / "coco")
    src = load_data(str(tmp_path / "coco"), "segmentation", 32, crop=Crop(32))
    assert src.class_names == ["background", "person", "dog"]  # category ids 1, 18 in id order
    for got in own_size_masks(src):
        person = np.zeros_like(got, bool)
        person[8:24, 8:40] = True  # the polygon's rectangle, x 8..40, y 8..24
        np.testing.assert_array_equal(got == 1, person)
        np.testing.assert_array_equal(got == 2, regions["dog"].astype(bool))
        np.testing.assert_array_equal(got == 255, regions["crowd"].astype(bool))


def test_csv_list_with_and_without_a_split_column(tmp_path):
    listed = write_csv(tmp_path / "a")
    src = load_data(f"csv:{listed}", "classification", 32)
    assert src.class_names == ["circle", "square", "triangle"] and (src.num_train, src.num_val) == (9, 3)
    plain = write_csv(tmp_path / "b", split_column=False)
    src = load_data(str(plain), "classification", 32, val_split=0.25)  # recognised by .csv
    assert src.num_train + src.num_val == 12 and src.num_val >= 3


def _train(argv, tmp_path, capsys, name):
    code, out, err = run_cli(["train", *argv, "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "runs"),
                              "--name", name, "--quiet", "--cache", "none"], capsys)
    assert code == 0, err
    return tmp_path / "runs" / name


@pytest.mark.parametrize("layout", ["voc", "cityscapes", "coco", "csv"])
def test_one_training_step_on_each_layout(layout, tmp_path, capsys):
    root = tmp_path / layout
    data = {"voc": lambda: write_voc(root) and f"voc:{root}",
            "cityscapes": lambda: write_cityscapes(root) and f"cityscapes:{root}",
            "coco": lambda: write_coco(root) and f"coco:{root}",
            "csv": lambda: f"csv:{write_csv(root)}"}[layout]()
    arch = ["--arch", "lenet5"] if layout == "csv" else TINY_UNET
    run = _train([*arch, "--data", data, "--img-size", "32"], tmp_path, capsys, layout)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"] == data and cfg["num_classes"] == {"voc": 21, "cityscapes": 19, "coco": 3, "csv": 3}[layout]
    assert (run / "model.keras").is_file()


def test_deeplab_trains_on_voc_crops_and_eval_scores_whole_images(tmp_path, capsys):
    write_voc(tmp_path / "voc", w=80, h=60)
    deeplab = ["--arch", "deeplabv3plus", "--model-arg", "backbone=resnet18", "--model-arg", "output_stride=8",
               "--model-arg", "aspp_filters=8", "--model-arg", "decoder_filters=8",
               "--model-arg", "low_level_filters=4"]
    run = _train([*deeplab, "--data", f"voc:{tmp_path / 'voc'}", "--crop", "64"], tmp_path, capsys, "dl")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["crop"] == 64 and cfg["img_size"] == 64
    code, out, err = run_cli(["eval", str(run)], capsys)
    assert code == 0, err
    report = json.loads((run / "eval.json").read_text())
    assert report["num_images"] == 2 and 0 <= report["val_miou"] <= 1
    for mask in sorted((run / "eval").glob("*_mask.png")):
        assert Image.open(mask).size == (80, 60)  # the photo's own size, not the crop's


@pytest.mark.parametrize("case", ["voc missing mask", "voc mask size", "cityscapes label id", "coco category",
                                  "coco image size", "coco json", "csv missing image", "wrong task"])
def test_damaged_layouts_are_one_line_naming_the_file(case, tmp_path, capsys):
    root = tmp_path / "d"
    arch = TINY_UNET
    if case.startswith("voc"):
        write_voc(root)
        bad = root / "SegmentationClass" / "2007_000001.png"
        bad.unlink() if "missing" in case else Image.new("P", (7, 9)).save(bad)
        data = f"voc:{root}"
    elif case.startswith("cityscapes"):
        write_cityscapes(root)
        bad = next(root.glob("gtFine/val/*/*.png"))
        Image.fromarray(np.full((32, 64), 40, np.uint8), mode="L").save(bad)
        data = str(root)
    elif case.startswith("coco"):
        write_coco(root)
        bad = root / "annotations" / "instances_val2017.json"
        doc = json.loads(bad.read_text())
        if case == "coco category":
            doc["annotations"][0]["category_id"] = 99
        elif case == "coco image size":
            doc["images"][0]["width"] = 65
            bad = root / "val2017" / doc["images"][0]["file_name"]
        json_text = json.dumps(doc) if case != "coco json" else "{not json"
        (root / "annotations" / "instances_val2017.json").write_text(json_text)
        data = f"coco:{root}"
    else:
        listed = write_csv(root)
        bad = root / "img" / "3.png"
        if case == "csv missing image":
            bad.unlink()
        data, arch = f"csv:{listed}", (["--arch", "lenet5"] if case != "wrong task" else TINY_UNET)
        bad = listed if case == "wrong task" else bad
    argv = ["train", *arch, "--data", data, "--img-size", "32", "--out", str(tmp_path / "runs")]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert str(bad.name) in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_crop_run_exports_at_its_crop_size(tmp_path, capsys):
    # the model takes any size (crops, whole photos); an exported file takes the crop size
    write_cityscapes(tmp_path / "cs")
    run = _train([*TINY_UNET, "--data", f"cityscapes:{tmp_path / 'cs'}", "--crop", "32"], tmp_path, capsys, "cs")
    code, out, err = run_cli(["export", str(run), "--tflite"], capsys)
    assert code == 0, err
    report = json.loads((run / "exports" / "report.json").read_text())
    assert report["formats"]["tflite"]["status"] == "ok", report["formats"]["tflite"]


def test_eval_long_side_scores_at_the_masks_own_size(tmp_path, capsys, unet_run):
    import tensorflow as tf

    from kcv.data.stores import resize_long_side

    # the resize: longer side N, aspect kept (60x80 -> 48x64; 80x60 at 50 -> 50x38)
    assert resize_long_side(tf.zeros([1, 60, 80, 3]), 64).shape == (1, 48, 64, 3)
    assert resize_long_side(tf.zeros([1, 80, 60, 3]), 50).shape == (1, 50, 38, 3)
    write_voc(tmp_path / "voc", w=80, h=60)
    run = _train([*TINY_UNET, "--data", f"voc:{tmp_path / 'voc'}", "--crop", "32"], tmp_path, capsys, "u")

    def scored(*extra):
        code, out, err = run_cli(["eval", str(run), *extra], capsys)
        assert code == 0, err
        return json.loads((run / "eval.json").read_text())

    whole = scored()
    # the images' own long side: the resize is the identity, so are the scores
    same = scored("--long-side", "80")
    assert same["long_side"] == 80 and same["confusion_matrix"] == whole["confusion_matrix"]
    # half size: the model sees 48x64 images, every labelled pixel of the 80x60 masks is scored
    half = scored("--long-side", "64")
    assert np.sum(half["confusion_matrix"]) == np.sum(whole["confusion_matrix"]) > 0
    for mask in sorted((run / "eval").glob("*_mask.png")):
        assert Image.open(mask).size == (80, 60)
    # refusals: one line each, exit 2
    for argv, says in ((["--long-side", "0"], "--long-side 0: must be at least 1"),
                       (["--long-side", "64"], "takes 32x32 images only")):
        target = run if argv[1] == "0" else unet_run
        code, out, err = run_cli(["eval", str(target), *argv], capsys)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert says in err, err
