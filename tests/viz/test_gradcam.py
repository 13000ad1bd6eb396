"""Grad-CAM (``kcv explain``): target layers, heat maps, the object test on ``shapes``, the CLI.

Every registered classifier is checked in ``tests/models/test_zoo.py`` (Grad-CAM on the loaded
model, target found on its own, finite heat); here: the method on a small conv net, where a
classifier trained on ``shapes`` looks, and the command's files and errors.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import kcv
from kcv import runs
from kcv.contracts import CONFIG_FILE
from kcv.data import shapes
from kcv.errors import KcvError
from kcv.viz.gradcam import GradCam, localisation, mass_inside, overlay_heatmap
from tests.conftest import run_cli
from tests.export.fixtures import build_test_cnn, cnn_run, one_error, registered_test_cnn  # noqa: F401  (cnn_run: fixture)


@pytest.fixture(scope="module")
def small_cnn():
    """The export tests' conv classifier, untrained, at 32 px (maps 32 → 16 → 8 → pool 4)."""
    return build_test_cnn(3, (32, 32, 3))


def test_default_target_is_last_conv_before_pooling(small_cnn):
    cam = GradCam(small_cnn)
    assert cam.layer == "cnn_s2b_relu" and cam.map_shape == (8, 8)  # not the 4×4 cnn_s2_pool
    x, _ = shapes.make_split(3, 32, "classification")
    heat, classes, probs = cam(x.astype("float32"))
    assert heat.shape == (3, 8, 8) and np.isfinite(heat).all()
    assert heat.min() >= 0 and np.allclose(heat.max(axis=(1, 2)), 1.0)  # normalised per image
    np.testing.assert_array_equal(classes, probs.argmax(-1))  # default: the predicted class


def test_named_layer_and_class(small_cnn):
    cam = GradCam(small_cnn, layer="cnn_s1b_relu")
    x, _ = shapes.make_split(2, 32, "classification")
    heat, classes, _ = cam(x.astype("float32"), class_index=2)
    assert heat.shape == (2, 16, 16) and list(classes) == [2, 2]


@pytest.mark.parametrize("layer, message", [("cnn_s2b_rel", "did you mean cnn_s2b_relu"),
                                            ("cnn_gap", "not one feature map")])
def test_bad_layer_is_one_line(small_cnn, layer, message):
    with pytest.raises(KcvError, match=message):
        GradCam(small_cnn, layer=layer)


def test_knn_is_refused_with_a_reason():
    model = kcv.create_model("knn", 3, (8, 8, 3), reference_size=6, k=3)
    with pytest.raises(KcvError, match="nearest-neighbour vote, which has no gradients"):
        GradCam(model)


def test_overlay_keeps_the_image_size():
    image = np.full((50, 70, 3), 128, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2] = 1.0
    out = overlay_heatmap(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert mass_inside(heat, np.ones((50, 70), bool)) == pytest.approx(1.0)


def gradcam_on_shapes(run_dir, n=64):
    """Grad-CAM (default layer, predicted class) of a run on ``n`` validation images of
    ``shapes`` whose object masks are known: ``(layer, accuracy, mass inside the mask, mask
    area, mass within one map cell of the object, its area, peak within one cell)``."""
    model, cfg = runs.load_run(run_dir)
    size = int(cfg["img_size"])
    samples = [shapes.make_sample(0, "val", i, size, "classification", with_mask=True) for i in range(n)]
    images = np.stack([s[0] for s in samples]).astype("float32")
    masks = np.stack([s[2] for s in samples]) > 0
    cam = GradCam(model)
    heat, predicted, _ = cam(images)
    scores = localisation(heat, masks, size // cam.map_shape[0])
    return (cam.layer, float(np.mean(predicted == [s[1] for s in samples])), scores["inside"].mean(),
            masks.mean(), scores["near"].mean(), scores["near_area"].mean(), scores["peak_near"].mean())


@pytest.fixture(scope="module")
def localising_run(tmp_path_factory):
    """The test CNN with a class-map head (1×1 conv to an 8×8 score map per class, global
    log-sum-exp pooling, r = 1) trained with ``--loss bce`` on ``shapes`` (1500 steps, ~40 s).
    At lr 3e-3, 3 of 8 seeds stayed at chance; at 1e-3 every seed tried learnt the shapes."""
    from kcv.train import TrainConfig, train

    with registered_test_cnn() as arch:
        return train(TrainConfig(arch=arch, data="shapes:3000", batch_size=16, epochs=8, lr=1e-3,
                                 augment="none", loss="bce", model_args={"head": "lse", "r": 1.0},
                                 out=str(tmp_path_factory.mktemp("lse_run")), verbose=0))


@pytest.mark.slow
def test_trained_classifier_puts_most_grad_cam_mass_inside_the_object(localising_run, images, tmp_path, capsys):
    """Issue 8's criterion: more than half of the Grad-CAM mass inside the object's mask.

    Met by a classifier whose class scores are pooled from class-score maps (log-sum-exp,
    Pinheiro & Collobert 2015) and trained one-vs-rest (Oquab et al. 2015): a class's map
    must stay low wherever that class is absent, so its positive part sits on the object.
    Grad-CAM of the score map is that map's positive part. Measured over five seeds in
    benchmarks/gradcam_localization.py; the GAP + softmax net of the next test puts only
    ~0.3 inside (its heat is on the outline, both sides of the edge).
    """
    layer, accuracy, inside, area, *_ = gradcam_on_shapes(localising_run, n=128)
    print(f"{layer}: accuracy {accuracy:.3f}, Grad-CAM mass inside the mask {inside:.3f} (area {area:.3f})")
    assert layer == "class_maps"  # found on its own: the last map before the global pooling
    assert accuracy > 0.9
    assert inside > 0.5
    capsys.readouterr()  # the figures above are not the command's output
    code, stdout, err = run_cli(["explain", str(localising_run), str(images / "img0.png"), "--out", str(tmp_path)],
                                capsys)
    assert code == 0, err
    record = json.loads(stdout)
    assert record["layer"] == "class_maps" and record["map"] == "8x8"
    assert (tmp_path / "img0_gradcam.png").stat().st_size > 500


def test_trained_classifier_looks_at_the_object(cnn_run):
    """The shared test CNN (GAP + softmax, val acc ~0.9 on shapes at 32 px): where does its
    Grad-CAM mass lie?

    Measured (64 validation images): 0.27 of the mass inside the object's mask, whose area is
    0.11 of the image (2.4× chance); 0.66 within one feature-map cell (4 px) of the object,
    whose area is 0.36; the heat's peak lies within one cell of the object on 98 % of the
    images (the pointing game of Zhang et al. 2016, with a 4-px tolerance where theirs is
    15 px). The heat sits on the outline — what tells a circle from a square; the interiors
    are flat colour — and an 8×8 map upsampled to 32 px spreads it over both sides of the
    edge. On triangles, the smallest shape (area 0.07 vs 0.18 for circles), most of the mass
    is on the background: the classifier uses the amount of background as evidence. Nets of
    this kind trained to 94-100 % accuracy score 0.22-0.40 (benchmarks/gradcam_localization.py);
    the class-map head of the test above is what moves the mass inside.
    """
    _, _, inside, area, inside_near, area_near, pointing = gradcam_on_shapes(cnn_run)
    print(f"Grad-CAM mass inside the mask {inside:.3f} (area {area:.3f}); "
          f"within one cell {inside_near:.3f} (area {area_near:.3f}); peak within one cell {pointing:.3f}")
    assert inside > 1.8 * area
    assert inside_near > 0.5 and inside_near > 1.5 * area_near
    assert pointing > 0.9


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain_images")
    for i in range(2):
        img, _ = shapes.make_sample(0, "val", i, 48, "classification")
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


def test_cli_writes_an_overlay_per_image(cnn_run, images, tmp_path, capsys):
    out = tmp_path / "cams"
    code, stdout, err = run_cli(["explain", str(cnn_run), str(images), "--out", str(out)], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["layer"] for r in records] == ["cnn_s2b_relu"] * 2
    for r in records:
        assert r["class"] == r["predicted"] and r["class"] in shapes.SHAPE_NAMES and 0 < r["prob"] <= 1
        png = out / f"{r['file'].rsplit('/', 1)[-1][:-4]}_gradcam.png"
        assert r["overlay"] == str(png) and png.stat().st_size > 500
        with Image.open(png) as im:
            assert im.size == (48, 48)  # the original image's size, not the model's 32 px

    code, stdout, err = run_cli(["explain", str(cnn_run / "model.keras"), str(images / "img0.png"),
                                 "--out", str(out), "--class", "square", "--layer", "cnn_s1b_relu"], capsys)
    assert code == 0, err
    record = json.loads(stdout)
    assert record["class"] == "square" and record["layer"] == "cnn_s1b_relu" and record["map"] == "16x16"


@pytest.mark.parametrize("extra, message", [(["--class", "dog"], "--class dog: not a class"),
                                            (["--layer", "nope"], "--layer nope: no such layer"),
                                            (["--alpha", "2"], "--alpha 2.0")])
def test_cli_bad_flags_are_one_line_and_write_nothing(cnn_run, images, tmp_path, capsys, extra, message):
    out = tmp_path / "cams"
    code, _, err = run_cli(["explain", str(cnn_run), str(images), "--out", str(out), *extra], capsys)
    assert code == 2 and one_error(err) and message in err, err
    assert not out.exists()


def test_cli_refuses_non_classifiers_and_exported_files(cnn_run, images, tmp_path, capsys):
    seg = tmp_path / "seg_run"
    shutil.copytree(cnn_run, seg)
    cfg = runs.load_config(seg)
    runs.write_json(seg / CONFIG_FILE, {**cfg, "task": "segmentation"})
    code, _, err = run_cli(["explain", str(seg), str(images)], capsys)
    assert code == 2 and one_error(err) and "Grad-CAM explains classifiers" in err
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"not used")
    code, _, err = run_cli(["explain", str(tflite), str(images)], capsys)
    assert code == 2 and one_error(err) and "Grad-CAM needs gradients" in err
