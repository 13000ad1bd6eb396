"""Property-based checks (Hypothesis) of the pure pieces the hostile-input fixes rest on."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kcv.errors import KcvError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def parse():
    import tensorflow as tf

    from kcv.data.images import exif_orientation_tf

    return tf.function(exif_orientation_tf, input_signature=[tf.TensorSpec([], tf.string)])


@SETTINGS
@given(code=st.integers(0, 12), big_endian=st.booleans(),
       extra=st.dictionaries(st.sampled_from([0x010F, 0x0110, 0x0131, 0x013B]), st.text("abcXYZ ", max_size=300),
                             max_size=4),
       icc=st.booleans())
def test_exif_parser_agrees_with_pil(parse, code, big_endian, extra, icc):
    """The graph-side parser reads the tag PIL reads, in either byte order, with other tags
    and an ICC profile segment around it; out-of-range codes mean 'as stored'."""
    from kcv.data.images import exif_orientation

    exif = Image.Exif()
    exif.endian = ">" if big_endian else "<"
    for tag, text in extra.items():
        exif[tag] = text
    exif[0x0112] = code
    buf = io.BytesIO()
    kw = {"icc_profile": b"\0" * 3000} if icc else {}
    Image.new("RGB", (8, 6), (9, 9, 9)).save(buf, "JPEG", exif=exif.tobytes(), **kw)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        expected = exif_orientation(im)
    assert expected == (code if 1 <= code <= 8 else 1)
    assert int(parse(buf.getvalue())) == expected


@SETTINGS
@given(st.binary(max_size=600))
def test_exif_parser_never_fails_on_garbage(parse, data):
    assert int(parse(b"\xff\xd8" + data)) in range(1, 9)
    assert int(parse(data)) in range(1, 9)


@SETTINGS
@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
                 st.lists(st.integers(), max_size=2)),
       st.sampled_from([4, 0.5, True, "transpose", (), None]))
def test_typed_hyperparameter_keeps_the_default_type_or_refuses(value, default):
    from kcv.registry import typed_hyperparameter

    try:
        got = typed_hyperparameter("p", value, default)
    except KcvError as e:
        assert str(e).startswith("--model-arg p=")
        return
    if default is None:
        assert got is value
    elif isinstance(default, float):
        assert isinstance(got, float) and np.isfinite(got)
    else:
        assert type(got) is type(default)


@SETTINGS
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=16), st.sampled_from([None, 3, 200]))
def test_masks_never_wrap(tmp_path, values, num_classes):
    """A mask value is a class index (< K, or 255) or the mask is refused; never cast silently."""
    from kcv.data.folders import read_mask

    arr = np.array(values, np.uint16 if max(values) > 255 else np.uint8).reshape(1, -1)
    path = tmp_path / "m.png"
    Image.fromarray(arr).save(path)
    try:
        mask = read_mask(path, num_classes)
    except KcvError as e:
        assert str(path) in str(e)
        assert max(values) > 255 or (num_classes and any(num_classes <= v != 255 for v in values))
        return
    assert mask.tolist() == arr.tolist()
