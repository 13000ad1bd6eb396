"""The harder synthetic variant of benchmarks/learn_study.py: deterministic, valid images that
kcv reads like user data. No training here (the study itself is a benchmark)."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from kcv.data import shapes

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def study():
    sys.path.insert(0, str(BENCH))  # benchmarks/ is a folder of scripts, not a package
    try:
        yield importlib.import_module("learn_study")
    finally:
        sys.path.remove(str(BENCH))


def test_harden_is_deterministic_and_harder(study):
    images, _ = shapes.make_split(4, 32, "classification", "train")
    first = [study.harden(img, "train", i) for i, img in enumerate(images)]
    again = [study.harden(img, "train", i) for i, img in enumerate(images)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(a.dtype == np.uint8 and a.shape == (32, 32, 3) for a in first)
    # another split or index draws other distractors; the source image is not modified
    assert not np.array_equal(study.harden(images[0], "val", 0), first[0])
    assert not np.array_equal(first[0], images[0])
    # the shape's contrast against the background is cut (35-60 %), noise is added on top
    _, _, mask = shapes.make_sample(0, "train", 0, 32, "classification", with_mask=True)
    on = mask > 0

    def contrast(img):
        return np.abs(img[on].mean(0) - img[~on].mean(0)).sum()

    assert contrast(first[0].astype(float)) < 0.75 * contrast(images[0].astype(float))


def test_hard_folders_load_as_user_data(study, tmp_path):
    from kcv.data.pipeline import load_data
    from kcv.data.unlabeled import load_unlabeled

    root = sys.modules["data_efficient"].write_folder(tmp_path / "hard", 2, 32, n_val=6, transform=study.harden)
    source = load_data(str(root), "classification", 32)
    assert (source.num_train, source.num_val) == (6, 6)
    unlabeled = load_unlabeled(str(study.write_unlabeled(tmp_path / "unl", 3, 32)), "classification", 32)
    assert len(unlabeled) == 3 and unlabeled.truth is None
