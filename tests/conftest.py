"""Shared fixtures: tiny trained runs and generated data folders.

Everything is real (TensorFlow, LiteRT, files on disk) and tiny (32–64 px, 1–2 epochs).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `kcv models` caches rows under $KCV_CACHE_DIR: keep tests out of the user's ~/.cache/kcv
os.environ["KCV_CACHE_DIR"] = __import__("tempfile").mkdtemp(prefix="kcv-test-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import kcv  # noqa: E402,F401
from kcv.data import shapes  # noqa: E402


# Tests that share the session-scoped export fixtures (tests/export/fixtures.py) run on one
# xdist worker, so the test CNN and U-Net are trained and exported once, not once per worker.
_EXPORT_GROUP = ("tests/export/", "tests/cli/test_predict.py", "tests/viz/test_gradcam.py",
                 "tests/test_compare.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid.startswith(_EXPORT_GROUP):
            item.add_marker(pytest.mark.xdist_group("export"))


def run_cli(argv, capsys):
    """Run ``kcv ARGV`` in-process; return ``(exit_code, stdout, stderr)``."""
    from kcv.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture(scope="session")
def unet_run(tmp_path_factory):
    """A U-Net trained for 2 epochs on 48 shapes images at 32 px."""
    from kcv.train import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    return train(TrainConfig(arch="unet", data="shapes:48", epochs=2, img_size=32, batch_size=16,
                             out=str(root), model_args={"base_filters": 4, "depth": 2}, verbose=0))


def write_classification_folders(root, split_dirs=True, n=6, size=40):
    """``root/{train,val}/<class>/*.png`` (or ``root/<class>/*``) from shapes images."""
    images, labels = shapes.make_split(3 * n, size, "classification")
    for i, (img, lab) in enumerate(zip(images, labels)):
        name = shapes.SHAPE_NAMES[lab]
        sub = ("val" if i % 3 == 0 else "train") if split_dirs else ""
        d = root / sub / name
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"img{i}.png")
    return root


def write_segmentation_folders(root, n=6, size=40, classes_txt=True):
    """``root/{train,val}/{images,masks}`` from shapes images; masks as palette PNGs."""
    images, masks = shapes.make_split(n, size, "segmentation")
    for i, (img, mask) in enumerate(zip(images, masks)):
        split = "val" if i % 3 == 0 else "train"
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / split / "images" / f"s{i}.jpg", quality=95)
        m = Image.fromarray(mask).convert("P")
        m.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        m.save(root / split / "masks" / f"s{i}.png")
    if classes_txt:
        (root / "classes.txt").write_text("\n".join(shapes.SEGMENTATION_NAMES) + "\n")
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(0)
