"""Both folder layouts load; every bad-data case of docs/design.md §5 is one line + exit 2."""

import numpy as np
import pytest
from PIL import Image

from kcv.data import folders
from kcv.data.pipeline import load_data
from kcv.errors import KcvError
from tests.conftest import run_cli, write_classification_folders, write_segmentation_folders


def test_classification_train_val_layout(tmp_path):
    write_classification_folders(tmp_path)
    src = load_data(str(tmp_path), "classification", 32)
    assert src.class_names == ["circle", "square", "triangle"]
    x, y = src.arrays("val")
    assert x.shape[1:] == (32, 32, 3) and len(x) == src.num_val == 6
    assert src.num_train == 12


def test_classification_flat_layout_split_by_seed(tmp_path):
    write_classification_folders(tmp_path, split_dirs=False)
    a = folders.load_classification(tmp_path, val_split=0.25, seed=1)
    b = folders.load_classification(tmp_path, val_split=0.25, seed=1)
    c = folders.load_classification(tmp_path, val_split=0.25, seed=2)
    assert a.val == b.val and a.val != c.val
    assert len(a.train) + len(a.val) == 18
    assert {lab for _, lab in a.val} == {0, 1, 2}  # stratified


def test_segmentation_layout_with_palette_masks(tmp_path):
    write_segmentation_folders(tmp_path)
    src = load_data(str(tmp_path), "segmentation", 32)
    assert src.class_names == ["background", "circle", "square", "triangle"]
    x, y = src.arrays("train")
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 32, 32)
    assert set(np.unique(y)) <= {0, 1, 2, 3}  # palette indices kept, nearest resize


def test_segmentation_classes_inferred_and_ignore_label(tmp_path):
    write_segmentation_folders(tmp_path, classes_txt=False)
    mask_path = next((tmp_path / "train" / "masks").glob("*.png"))
    m = np.array(Image.open(mask_path))
    m[:3, :3] = 255
    Image.fromarray(m).save(mask_path)
    found = folders.load_segmentation(tmp_path)
    assert len(found.class_names) == 4


def test_grayscale_and_rgba_become_rgb(tmp_path):
    write_classification_folders(tmp_path)
    d = tmp_path / "train" / "circle"
    Image.new("L", (20, 30), 128).save(d / "gray.png")
    Image.new("RGBA", (30, 20), (10, 20, 30, 40)).save(d / "rgba.png")
    Image.new("RGB", (30, 20), (1, 2, 3)).save(d / "img.bmp")
    src = load_data(str(tmp_path), "classification", 32)
    x, _ = src.arrays("train")
    assert x.shape[-1] == 3 and len(x) == 15


def _corrupt(path):
    path.write_bytes(b"not an image at all")


BAD_CASES = {
    "unreadable image": ("classification", lambda r: _corrupt(next((r / "train" / "circle").glob("*.png"))), "unreadable image"),  # noqa: E501 (one case a row)
    "empty folder": ("classification", lambda r: None, "empty folder"),
    "one class": ("classification", lambda r: [p.unlink() for p in (r / "train" / "square").glob("*")] and None, None),
    "image without mask": ("segmentation", lambda r: next((r / "train" / "masks").glob("*.png")).unlink(), "image without mask"),  # noqa: E501 (one case a row)
    "mask size": ("segmentation", lambda r: Image.new("L", (7, 9)).save(next((r / "val" / "masks").glob("*.png"))), "differs from image size"),  # noqa: E501 (one case a row)
    "mask value": ("segmentation", lambda r: Image.new("L", (40, 40), 9).save(next((r / "train" / "masks").glob("*.png"))), "mask value 9 >= number of classes"),  # noqa: E501 (one case a row)
    "missing folder": ("segmentation", lambda r: None, "data folder not found"),
    "empty class folder": ("classification", lambda r: [p.unlink() for p in (r / "train" / "square").glob("*")] and None, "empty class folder"),  # noqa: E501 (one case a row)
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_is_one_line_exit_2(case, tmp_path, capsys):
    task, damage, message = BAD_CASES[case]
    root = tmp_path / "data"
    if case == "empty folder":
        root.mkdir()
    elif case == "one class":
        write_classification_folders(root, split_dirs=False)
        for d in ("square", "triangle"):
            for p in (root / d).glob("*"):
                p.unlink()
            (root / d).rmdir()
        message = "need at least 2 classes"
    elif case != "missing folder":
        (write_classification_folders if task == "classification" else write_segmentation_folders)(root)
        damage(root)
    arch = "lenet5" if task == "classification" else "unet"
    code, out, err = run_cli(["train", "--arch", arch, "--data", str(root), "--out", str(tmp_path / "runs")], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert message in err
    assert str(root) in err  # names the file or folder
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_segmentation_fewer_than_two_classes(tmp_path):
    write_segmentation_folders(tmp_path, classes_txt=False)
    for p in tmp_path.glob("*/masks/*.png"):
        Image.new("L", (40, 40), 0).save(p)
    with pytest.raises(KcvError, match="need at least 2 classes"):
        folders.load_segmentation(tmp_path)


def test_rgb_mask_is_rejected(tmp_path):
    write_segmentation_folders(tmp_path)
    p = next((tmp_path / "train" / "masks").glob("*.png"))
    Image.new("RGB", (40, 40)).save(p)
    with pytest.raises(KcvError, match="single-channel"):
        folders.load_segmentation(tmp_path)


def test_segmentation_masks_are_resized_with_nearest_neighbour(tmp_path):
    # Classes 0 and 3 side by side with an ignored (255) band: a bilinear or area resize to a
    # non-integer scale would invent 1s and 2s on the 0|3 edges and 128-ish values next to 255.
    write_segmentation_folders(tmp_path)
    for mask_path in (tmp_path / "train" / "masks").glob("*.png"):
        m = np.zeros((40, 40), np.uint8)
        m[:, 17:] = 3
        m[5:11, :] = 255
        Image.fromarray(m).save(mask_path)
    _, y = load_data(str(tmp_path), "segmentation", 29).arrays("train")
    assert set(np.unique(y)) == {0, 3, 255}
