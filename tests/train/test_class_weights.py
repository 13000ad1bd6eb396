"""``--class-weights``: parsing, and inverse-frequency weights checked by hand."""

import numpy as np
import pytest

from kcv.errors import KcvError
from kcv.train.class_weights import count_classes, inverse_frequency, parse_class_weights


def test_parse():
    assert parse_class_weights(None) is None
    assert parse_class_weights("auto") == "auto"
    assert parse_class_weights("0.5, 1,2") == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("bad", ["a,b", "1,,2", "-1,1", "0,0", "nan,1", "inf,1", ""])
def test_bad_values_are_one_line_errors(bad):
    with pytest.raises(KcvError, match="--class-weights"):
        parse_class_weights(bad)


def test_inverse_frequency_by_hand():
    # 2 masks, 4 classes, one 255 pixel ignored.
    masks = [np.array([[0, 0, 0], [0, 1, 255]]), np.array([[0, 0, 1], [3, 3, 3]])]
    counts = count_classes(masks, 4)
    assert counts.tolist() == [6, 2, 0, 3]
    # N = 11, C = 4: w = 11 / (4 n_c); absent class 2 -> 1
    np.testing.assert_allclose(inverse_frequency(counts), [11 / 24, 11 / 8, 1.0, 11 / 12], rtol=1e-6)
    # Balanced data gets all ones; weights average to 1 over the labelled pixels.
    assert inverse_frequency(np.array([5, 5, 5])) == [1.0, 1.0, 1.0]
    w = np.array(inverse_frequency(np.array([80, 10, 10])))
    assert np.isclose((w * [80, 10, 10]).sum(), 100)
