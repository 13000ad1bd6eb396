"""Every augmentation op keeps images, masks and labels consistent (docs/design.md §5: 255 = ignore)."""

import numpy as np
import pytest
import tensorflow as tf

from kcv.augment import Augmenter
from kcv.augment.policy import OPS, PHOTOMETRIC
from kcv.data import shapes

K = 4  # background + 3 shapes
LUT = np.array([[0, 250, 40], [90, 160, 250], [180, 70, 130], [250, 10, 210]], np.float32)


def seg_batch(n=6, size=32):
    """Masks of the shapes set; images painted one flat colour per class, so an image
    region that moved without its mask (or vice versa) shows up as mixed colours."""
    _, masks = shapes.make_split(n, size, "segmentation")
    return LUT[masks], masks.astype(np.int32)


def run(policy, images, targets, task="segmentation", seed=(3, 7), k=K):
    aug = Augmenter(policy, task, k)
    x, y = aug(tf.constant(images, tf.float32), tf.constant(targets), tf.constant(seed, tf.int64))
    return np.asarray(x), np.asarray(y)


def interior(mask, margin=2):
    """Pixels at least ``margin`` px from another label, a fill or the border: there
    bilinear images and nearest masks legitimately differ (more so after chained resampling)."""
    r = margin
    p = np.pad(mask, ((0, 0), (r, r), (r, r)), constant_values=255)
    same = np.ones(mask.shape, bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            same &= p[:, dy:dy + mask.shape[1], dx:dx + mask.shape[2]] == mask
    return same & (mask != 255)


def assert_aligned(images, masks):
    """Inside each labelled region the image holds one colour (photometric ops may change
    the colour, but uniformly: a flat region stays flat). Checked as: 95 % of the region's
    interior pixels lie within 12 of the region's median colour (a few border pixels may
    carry a filter's edge effect, e.g. RandAugment's sharpness before a translation)."""
    inside = interior(masks)
    assert inside.mean() > 0.2, "too few labelled pixels left to check"
    for i in range(len(masks)):
        for c in range(K):
            region = images[i][inside[i] & (masks[i] == c)]
            if len(region) > 8:
                near = np.abs(region - np.median(region, axis=0)).max(axis=1) < 12
                assert near.mean() > 0.95, (i, c, near.mean())


def test_flip_moves_image_and_mask_together():
    images, masks = seg_batch()
    x, y = run("flip=hv", images, masks)
    for i in range(len(masks)):
        options = [(images[i], masks[i]), (images[i][:, ::-1], masks[i][:, ::-1]),
                   (images[i][::-1], masks[i][::-1]), (images[i][::-1, ::-1], masks[i][::-1, ::-1])]
        hits = [k for k, (a, b) in enumerate(options) if np.array_equal(x[i], a) and np.array_equal(y[i], b)]
        assert hits, f"sample {i}: image and mask flipped differently"
    assert not np.array_equal(y, masks), "nothing was flipped"


def test_rotate90_is_exact_and_shared():
    images, masks = seg_batch(8)
    x, y = run("rotate90", images, masks)
    for i in range(len(masks)):
        ks = [k for k in range(4) if np.array_equal(y[i], np.rot90(masks[i], k))
              and np.array_equal(x[i], np.rot90(images[i], k))]
        assert ks, f"sample {i}: not the same rotation of image and mask"
    assert set(np.unique(y)) <= set(range(K)), "rot90 must not fill or interpolate"


@pytest.mark.parametrize("policy", ["rotate=40", "crop=0.6", "shear=0.3", "translate=0.25",
                                    "flip,rotate=20,crop=0.8,shear=0.1"])
def test_geometric_ops_keep_masks_on_their_pixels(policy):
    images, masks = seg_batch()
    x, y = run(policy, images, masks)
    assert y.dtype == np.int32 and set(np.unique(y)) <= set(range(K)) | {255}
    assert_aligned(x, y)


def test_randaugment_ops_keep_masks_on_their_pixels():
    """One RandAugment op per batch, several batches: each of its sub-ops in turn.

    (Chained, a filter's border effect can be translated into the image, which the flat-
    region check would mistake for a misalignment.)"""
    images, masks = seg_batch()
    for s in range(6):
        x, y = run("randaugment=1x15", images, masks, seed=(s, 5))
        assert_aligned(x, y)


def test_pixels_from_outside_are_ignored():
    images, masks = seg_batch()
    x, y = run("rotate=45", images, masks)
    outside = y == 255
    assert outside.mean() > 0.02, "a 45° rotation must bring in outside pixels"
    # deep inside the filled corners the image is the constant fill (0)
    corners = outside.copy()
    for shift, axis in ((1, 1), (-1, 1), (1, 2), (-1, 2)):
        corners &= np.roll(outside, shift, axis)
    assert np.abs(x[corners]).max() < 1e-3


@pytest.mark.parametrize("op", [name for name, (kind, _, _) in OPS.items() if kind == PHOTOMETRIC])
def test_photometric_ops_leave_masks_alone(op):
    images, masks = seg_batch()
    policy = f"{op}=1" if op == "erasing" else op + "=0.5"
    x, y = run(policy, images, masks)
    np.testing.assert_array_equal(y, masks)
    assert not np.allclose(x, images), f"{op} changed nothing"


def test_photometric_ops_leave_class_labels_alone():
    images, labels = shapes.make_split(6, 32, "classification")
    x, y = run("brightness=0.5,contrast=0.5,erasing=1", images, labels, "classification", k=3)
    np.testing.assert_array_equal(y, labels)


def flat_batch(n=8, size=32):
    """Sample i painted in its own grey level, so a pasted pixel tells where it came from."""
    levels = 10.0 + 30.0 * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, size, size, 3)).copy(), levels


def test_cutmix_label_mixes_by_pasted_area():
    images, levels = flat_batch()
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    x, y = run("cutmix", images, labels, "classification", k=3)
    mixed = 0
    for i in range(len(labels)):
        src = np.rint((x[i, ..., 0] - 10.0) / 30.0).astype(int)  # whose pixel is this
        pasted = src != i
        frac = pasted.mean()
        expected = np.eye(3)[labels[i]] * (1 - frac)
        if frac:
            assert len(np.unique(src[pasted])) == 1, "one partner per sample"
            expected = expected + np.eye(3)[labels[src[pasted][0]]] * frac
            mixed += 1
        np.testing.assert_allclose(y[i], expected, atol=1e-5)
    assert mixed >= 3


def test_cutmix_pastes_the_mask_region_too():
    images, _ = flat_batch(6)
    _, masks = shapes.make_split(6, 32, "segmentation")
    masks = masks.astype(np.int32)
    x, y = run("cutmix", images, masks)
    pasted_any = False
    for i in range(len(masks)):
        src = np.rint((x[i, ..., 0] - 10.0) / 30.0).astype(int)
        np.testing.assert_array_equal(y[i], masks[src, np.arange(32)[:, None], np.arange(32)[None, :]])
        pasted_any |= bool((src != i).any())
    assert pasted_any


def test_mixup_mixes_images_and_labels_with_one_weight():
    images, levels = flat_batch()
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    x, y = run("mixup=1.0", images, labels, "classification", k=3)
    onehot = np.eye(3)[labels]
    for i in range(len(labels)):
        v = x[i, 0, 0, 0]
        assert np.allclose(x[i], v, atol=1e-3), "mixup blends whole images"
        # image = lam * image_i + (1 - lam) * image_j and label = the same blend, for some j
        fits = []
        for j in range(len(labels)):
            lam = 1.0 if j == i else (v - levels[j]) / (levels[i] - levels[j])
            if -1e-4 <= lam <= 1 + 1e-4 and np.allclose(y[i], lam * onehot[i] + (1 - lam) * onehot[j], atol=1e-3):
                fits.append(j)
        assert fits, f"sample {i}: label weights {y[i]} do not match the image blend {v}"


def test_same_seed_same_batch_other_seed_other_batch():
    images, masks = seg_batch()
    a = run("flip,rotate=30,crop=0.8,randaugment=2x9,cutmix", images, masks, seed=(1, 2))
    b = run("flip,rotate=30,crop=0.8,randaugment=2x9,cutmix", images, masks, seed=(1, 2))
    c = run("flip,rotate=30,crop=0.8,randaugment=2x9,cutmix", images, masks, seed=(1, 3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
