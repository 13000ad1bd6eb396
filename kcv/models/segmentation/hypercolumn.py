"""Hypercolumns (Hariharan, Arbeláez, Girshick & Malik, "Hypercolumns for Object Segmentation
and Fine-grained Localization", CVPR 2015, arXiv:1411.5752).

The hypercolumn of a pixel is the vector of activations of *all* the CNN units above it, so
coarse semantic layers and fine, well-localised early layers are read together. Each chosen
backbone stage is upsampled bilinearly to a common resolution, the maps are concatenated per
pixel, and a 1×1 convolution (a linear classifier on each hypercolumn) scores the classes.

As in the paper's efficient form (§3.3), the classifier runs at the resolution of the finest
stage read (stride 4 by default) and its scores are upsampled to the input: bilinear
interpolation and a 1×1 convolution are both linear, so this equals classifying the
full-resolution hypercolumns at 1/16 of the memory. Differences: any classifier with feature
taps is the backbone and the stages are its taps (``strides``; the paper read AlexNet/VGG's
pool2, conv4 and fc7); one classifier for the whole image instead of the paper's coarse grid
of location-specific classifiers, which served detection boxes (SDS), not whole images.
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.errors import KcvError
from kcv.models.backbone import feature_taps
from kcv.models.segmentation.base import crop_logits, encoder_taps, resize_like
from kcv.registry import register


def build_hypercolumn(num_classes: int, input_shape, backbone: str = "vgg16", strides=(4, 8, 16, 32),
                      backbone_args=None, name: str = "hypercolumn") -> keras.Model:
    """Build a hypercolumn segmenter (logits at input resolution).

    Args:
        backbone: a classifier with feature taps.
        strides: which taps form the hypercolumn (at least two).
        backbone_args: hyperparameters for the backbone builder.
    """
    strides = tuple(sorted({int(s) for s in strides}))
    available = sorted(feature_taps(backbone))
    if len(strides) < 2 or any(s not in available for s in strides):
        raise KcvError(f"strides={list(strides)}: choose two or more of {available} (the taps of '{backbone}')")
    image = keras.Input(shape=tuple(input_shape), name="image")
    padded, feats = encoder_taps(image, backbone, strides, max(strides), name, backbone_args)
    finest = feats[0]
    columns = [finest] + [resize_like(f, finest, f"{name}_upsample{s}") for s, f in zip(strides[1:], feats[1:])]
    x = layers.Concatenate(name=f"{name}_concat")(columns)
    x = layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)
    x = resize_like(x, padded, f"{name}_upsample")
    return keras.Model(image, crop_logits(x, image, max(strides)), name=name)


# `kcv train` defaults (benchmarks/segmentation_zoo.py): ResNet-18 (VGG-16 trains at a third
# of its speed on a CPU); lr 2e-3 and 20 epochs, because a linear classifier on from-scratch
# features was still climbing at 10 epochs: val mIoU 0.56 (0.45 with lr 1e-3, 10 epochs).
TRAIN = {"img_size": 64, "epochs": 20, "batch_size": 16, "lr": 2e-3, "model_args": {"backbone": "resnet18"}}


@register("hypercolumn", task="segmentation", family="hypercolumn",
          paper="Hariharan et al. 2015, arXiv:1411.5752", train_defaults=TRAIN)
def hypercolumn(num_classes, input_shape=(None, None, 3), backbone="vgg16", strides=(4, 8, 16, 32),
                backbone_args=None):
    """Hypercolumns of VGG-16's stride-4..32 taps and a 1×1 classifier; ``kcv train``
    defaults to a ResNet-18 backbone (``TRAIN`` above)."""
    return build_hypercolumn(num_classes, input_shape, backbone, strides, backbone_args)
