"""``kcv predict --crf``: dense-CRF refined masks for segmentation runs; a one-line error otherwise."""

import json

import numpy as np
import pytest
from PIL import Image

import kcv
from kcv.data import shapes
from tests.conftest import run_cli

pytest.importorskip("pydensecrf.densecrf")


@pytest.fixture(scope="module")
def seg_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg_images")
    xs, _ = shapes.make_split(2, 48, "segmentation", "val")
    for i, x in enumerate(xs):
        Image.fromarray(x).save(folder / f"s{i}.png")
    return folder


def test_predict_crf_writes_refined_mask_and_overlay(unet_run, seg_images, tmp_path, capsys):
    plain, refined = tmp_path / "plain", tmp_path / "crf"
    code, out, err = run_cli(["predict", str(unet_run / "model.keras"), str(seg_images), "--out", str(plain)], capsys)
    assert code == 0, err
    code, out, err = run_cli(["predict", str(unet_run / "model.keras"), str(seg_images), "--out", str(refined),
                              "--crf"], capsys)
    assert code == 0, err
    assert "dense CRF" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    for r in records:
        mask = np.asarray(Image.open(r["mask"]))
        assert mask.shape == (48, 48) and mask.max() < 4
        assert Image.open(r["overlay"]).size == (48, 48)
        assert abs(sum(r["classes"].values()) - 1) < 1e-3


def test_predict_crf_on_a_classifier_is_a_one_line_error(seg_images, tmp_path, capsys):
    model = kcv.create_model("lenet5", 3, (32, 32, 3))
    model.save(tmp_path / "cls.keras")
    code, out, err = run_cli(["predict", str(tmp_path / "cls.keras"), str(seg_images / "s0.png"), "--crf"], capsys)
    assert code == 2
    assert err.startswith("error: --crf") and len(err.strip().splitlines()) == 1
