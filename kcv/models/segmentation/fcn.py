"""Fully Convolutional Networks (Long, Shelhamer & Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015, arXiv:1411.4038): FCN-32s, FCN-16s, FCN-8s.

The classifier's fully connected layers become convolutions — fc6 a 7×7 conv with 4096
filters, fc7 a 1×1 conv with 4096, each ReLU + dropout 0.5 — on the stride-32 features, and a
1×1 ``score_fr`` conv gives coarse class scores. FCN-32s upsamples them 32× in one step.
FCN-16s upsamples 2× (``upscore2``), adds scores predicted by a 1×1 conv on the stride-16
features (``score_pool4``) and upsamples the sum 16×; FCN-8s fuses once more with the
stride-8 features (``score_pool3``, ``upscore_pool4``) and upsamples 8×. As in the paper
(§4.2): the skip score layers start at zero, so a net starts from its coarser parent's
output; upsampling is a transposed convolution initialised to bilinear interpolation —
learned for the 2× steps, fixed for the final one (the reference prototxts' ``lr_mult: 0``).
``upsampling="bilinear"`` uses parameter-free bilinear resizes instead.

Differences from the paper, on purpose:

- 'same' padding instead of the 100-pixel input padding and 'valid' convs + Crop layers: the
  image is zero-padded to a multiple of 32 and the logits cropped back (``base.py``), so the
  output is the input's size for any size.
- The skips read the backbone's *feature taps* (:mod:`kcv.models.backbone`), as every kcv
  decoder does: for VGG-16 the stride-16 and stride-8 taps are conv5_3 and conv4_3, the
  layers that pool4/pool3 are the max-pools *after* conv4_3/conv3_3 — one conv block deeper
  than the paper's skips, at the same strides.
- Any tap-exposing classifier can be the backbone (``backbone="resnet18"``...). fc6/fc7 are
  the same on every backbone (``fc_kernel``×``fc_kernel`` and 1×1 convs of ``fc_width``
  filters on the stride-32 tap); narrow them for a big backbone, e.g. ``fc_width=512``
  (torchvision's FCN-ResNet instead uses one 3×3 conv to C/4 channels with BN).
- Trained from scratch here (no ImageNet weights offline), so ``kcv train`` defaults to a
  ResNet-18 backbone, 512-wide fc layers without dropout and 128 px images (``TRAIN`` below).
"""

from __future__ import annotations

import keras
from keras import layers

from kcv.layers.upsample import BilinearKernel
from kcv.models.segmentation.base import check_choice, crop_logits, encoder_taps, resize_like
from kcv.registry import register

UPSAMPLING = ("transpose", "bilinear")
PAD_MULTIPLE = 32


def upscore(x, reference, factor: int, upsampling: str, trainable: bool, name: str):
    """Upsample class scores ``factor``× to ``reference``'s H×W.

    ``transpose``: a ``2f``×``2f`` stride-``f`` transposed conv, bilinear-initialised and
    without bias (FCN's deconvolution layers); ``bilinear``: a parameter-free resize.
    """
    if upsampling == "bilinear":
        return resize_like(x, reference, name)
    channels = x.shape[-1]
    return layers.Conv2DTranspose(channels, 2 * factor, strides=factor, padding="same", use_bias=False,
                                  kernel_initializer=BilinearKernel(), trainable=trainable, name=name)(x)


def fc_layers(x, width: int, kernel: int, dropout: float, name: str):
    """fc6 (k×k conv) and fc7 (1×1 conv), each ReLU + dropout: the classifier made convolutional."""
    for i, k in ((6, kernel), (7, 1)):
        x = layers.Conv2D(width, k, padding="same", activation="relu", kernel_initializer="he_normal",
                          name=f"{name}_fc{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_drop{i}")(x)
    return x


def build_fcn(num_classes: int, input_shape, output_stride: int = 8, backbone: str = "vgg16",
              fc_width: int = 4096, fc_kernel: int = 7, dropout: float = 0.5,
              upsampling: str = "transpose", backbone_args=None, name: str = "fcn8s") -> keras.Model:
    """Build FCN-32s/16s/8s (logits at input resolution).

    Args:
        output_stride: 32, 16 or 8 — the stride of the finest skip fused (the "-Ns" of the name).
        backbone: any registered classifier with feature taps (VGG-16 in the paper).
        fc_width / fc_kernel: filters and kernel of fc6 (fc7 is 1×1 with the same width).
        dropout: after fc6 and fc7 (0.5).
        upsampling: ``transpose`` (bilinear-initialised deconvolutions) or ``bilinear``.
        backbone_args: hyperparameters for the backbone (e.g. ``{"batch_norm": True}``).
    """
    check_choice("output_stride", output_stride, (32, 16, 8))
    check_choice("upsampling", upsampling, UPSAMPLING)
    skips = {32: (), 16: (16,), 8: (16, 8)}[output_stride]
    image = keras.Input(shape=tuple(input_shape), name="image")
    padded, feats = encoder_taps(image, backbone, (32, *skips), PAD_MULTIPLE, name, backbone_args)
    x = fc_layers(feats[0], int(fc_width), int(fc_kernel), float(dropout), name)
    score = layers.Conv2D(num_classes, 1, name=f"{name}_score_fr")(x)
    for stride, feat, up_name in zip(skips, feats[1:], ("upscore2", "upscore_pool4")):
        up = upscore(score, feat, 2, upsampling, True, f"{name}_{up_name}")
        pool = {16: "pool4", 8: "pool3"}[stride]
        # Zero-initialised: the fused net starts exactly as its coarser parent (paper §4.2).
        skip = layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=f"{name}_score_{pool}")(feat)
        score = layers.Add(name=f"{name}_fuse_{pool}")([up, skip])
    score = upscore(score, padded, output_stride, upsampling, False, f"{name}_upscore{output_stride}")
    return keras.Model(image, crop_logits(score, image, PAD_MULTIPLE), name=name)


PAPER = "Long et al. 2015, arXiv:1411.4038"
# `kcv train` defaults (benchmarks/segmentation_zoo.py, figures in benchmarks/RESULTS.md).
# 128 px, because at 64 px the stride-32 score map of FCN-32s is 2×2 and even an oracle
# stride-32 predictor (true class fractions of each 32×32 cell, bilinearly upsampled) reaches
# only 0.25 mIoU on shapes (0.58 at 128 px). ResNet-18 and 512-wide fc layers, because VGG-16
# (with BN, which it needs without the paper's ImageNet initialisation) trains ~3× slower on
# a CPU. No dropout: the paper's 0.5 after fc6 and fc7 comes with ImageNet-trained fc layers;
# from scratch it held FCN-32s at the majority-class baseline (val mIoU 0.21 vs 0.31 without,
# same 120 steps) and at 0.32 after 500. The paper's net is `--model-arg backbone=vgg16
# --model-arg "backbone_args={batch_norm: true}" --model-arg fc_width=4096 --model-arg dropout=0.5`.
TRAIN = {"img_size": 128, "epochs": 10, "batch_size": 16, "lr": 2e-3,
         "model_args": {"backbone": "resnet18", "fc_width": 512, "dropout": 0.0}}


def _register(stride: int):
    name = f"fcn{stride}s"

    @register(name, task="segmentation", family="fcn", paper=PAPER, train_defaults=TRAIN)
    def builder(num_classes, input_shape=(None, None, 3), backbone="vgg16", fc_width=4096, fc_kernel=7,
                dropout=0.5, upsampling="transpose", backbone_args=None):
        return build_fcn(num_classes, input_shape, stride, backbone, fc_width, fc_kernel, dropout,
                         upsampling, backbone_args, name)

    builder.__name__ = builder.__qualname__ = name
    fused = {32: "no skips", 16: "a stride-16 skip", 8: "stride-16 and stride-8 skips"}[stride]
    builder.__doc__ = f"FCN-{stride}s ({fused}); VGG-16 backbone by default."
    return builder


fcn32s = _register(32)
fcn16s = _register(16)
fcn8s = _register(8)
