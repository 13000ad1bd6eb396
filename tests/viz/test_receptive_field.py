"""``kcv info ARCH --draw``: the receptive field of one unit drawn beside the numbers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from kcv.viz import style
from kcv.viz.receptive_field import effective_field, unit_field
from tests.conftest import run_cli
from tests.export.fixtures import one_error


def _two_convs():
    """3×3 stride 1, then 3×3 stride 2, on 16 px: field 5×5, jump 2, an 8×8 map."""
    x = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c2")(y)
    return keras.Model(x, y)


def test_unit_field_numbers_and_gradient_support():
    model = _two_convs()
    field = unit_field(model, unit=(0, 0))
    assert field["layer"] == "c2" and field["map"] == (8, 8)
    assert field["rf"].size == (5, 5) and field["rf"].jump == (2, 2)
    top, left, bottom, right = field["box"]
    assert (bottom - top, right - left) == (5, 5) and field["centre"] == (1.0, 1.0)
    # every pixel the unit depends on lies in the drawn square (to the half pixel that
    # TensorFlow's asymmetric "same" padding moves it)
    erf = effective_field(model, field["tensor"], field["unit"])
    rows, cols = np.nonzero(erf > 0)
    assert rows.max() + 1 <= bottom + 0.5 and cols.max() + 1 <= right + 0.5
    assert unit_field(model)["unit"] == (4, 4)  # default: the centre unit


def test_cli_draws_a_png_beside_the_report(tmp_path, capsys):
    png = tmp_path / "rf.png"
    code, out, err = run_cli(["info", "lenet5", "--no-layers", "--draw", "--out", str(png), "--unit", "0,0"], capsys)
    assert code == 0, err
    assert "receptive field" in out and f"wrote {png}" in out
    assert png.stat().st_size > 5000 and style.style_of(png) == style.STYLE_VERSION
    with Image.open(png) as im:
        assert im.format == "PNG"


@pytest.mark.parametrize("flags, message", [
    (["--draw", "--unit", "9,9"], "--unit 9,9: outside the 1×1 map"),
    (["--draw", "--unit", "one"], "--unit one: expected ROW,COL"),
    (["--draw", "--layer", "nope"], "--layer nope: no such layer"),
    (["--draw", "--out", "rf.jpg"], "name a .png file"),
    (["--unit", "0,0"], "add --draw"),
    (["--out", "rf.png"], "add --draw"),
])
def test_cli_bad_draw_flags_are_one_line(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["info", "lenet5", "--img-size", "32", "--no-layers", *flags], capsys)
    assert code == 2 and one_error(err) and message in err, err
    assert not list(tmp_path.iterdir())
