import numpy as np

from kcv.data import shapes
from kcv.data.pipeline import load_data


def test_deterministic_and_prefix_stable():
    a, ma = shapes.make_split(20, 32, "segmentation")
    b, mb = shapes.make_split(10, 32, "segmentation")
    np.testing.assert_array_equal(a[:10], b)
    np.testing.assert_array_equal(ma[:10], mb)


def test_splits_differ():
    train, _ = shapes.make_split(4, 32, "classification", "train")
    val, _ = shapes.make_split(4, 32, "classification", "val")
    assert not np.array_equal(train, val)


def test_classification_labels_and_segmentation_masks():
    _, labels = shapes.make_split(60, 32, "classification")
    assert set(labels) == {0, 1, 2}
    _, masks = shapes.make_split(30, 48, "segmentation")
    assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1, 2, 3}
    # every image has at least one shape of reasonable size
    assert (masks > 0).reshape(30, -1).mean(1).min() > 0.03


def test_pipeline_batches_float_pixels():
    src = load_data("shapes:16", "segmentation", 32)
    x, y = next(iter(src.dataset("train", 8, shuffle=True)))
    assert x.shape == (8, 32, 32, 3) and x.dtype.name == "float32"
    assert y.shape == (8, 32, 32) and y.dtype.name == "int32"
    assert 0 <= float(np.min(x)) and float(np.max(x)) <= 255
    assert src.num_classes == 4 and src.num_val == 8
