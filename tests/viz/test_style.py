"""curves.png and the confusion-matrix PNG: non-empty, written atomically, one shared style."""

from __future__ import annotations

import numpy as np
from PIL import Image

from kcv.viz import style
from kcv.viz.confusion import plot_confusion
from kcv.viz.curves import plot_curves

ROWS = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.2 / e, "accuracy": 0.5 + 0.1 * e,
         "val_accuracy": 0.45 + 0.1 * e} for e in range(1, 5)]


def _png_ok(path):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert not list(path.parent.glob(".*.tmp*")), "a temporary file was left behind"


def test_curves_and_confusion_share_the_style(tmp_path):
    curves = plot_curves(ROWS, tmp_path / "curves.png", title="lenet5 on shapes")
    cm = plot_confusion(np.array([[8, 1, 1], [0, 9, 1], [2, 0, 8]]), ["circle", "square", "triangle"],
                        tmp_path / "confusion.png", title="lenet5")
    seg = plot_curves([{"epoch": 1, "loss": 0.9, "val_loss": 1.0, "miou": 0.3, "val_miou": 0.25}],
                      tmp_path / "seg_curves.png")
    for path in (curves, cm, seg):
        _png_ok(path)
        assert style.style_of(path) == style.STYLE_VERSION


def test_style_leaves_matplotlib_defaults_alone(tmp_path):
    plt = style.pyplot()
    before = plt.rcParams["axes.spines.top"]
    plot_curves(ROWS, tmp_path / "c.png")
    assert plt.rcParams["axes.spines.top"] == before


def test_curves_without_validation_and_with_nan(tmp_path):
    rows = [{"epoch": 1, "loss": 1.0, "accuracy": 0.4}, {"epoch": 2, "loss": float("nan"), "accuracy": 0.5}]
    _png_ok(plot_curves(rows, tmp_path / "c.png"))
