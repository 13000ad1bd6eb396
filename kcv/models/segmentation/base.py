"""What every segmentation decoder in kcv shares: the encoder on a padded image, and the crop
back to the input's size (smp ``base/model.py``, keras-hub ``FeaturePyramidBackbone``).

A decoder asks :func:`encoder_taps` for the features of any tap-exposing classifier
(:mod:`kcv.models.backbone`) at the strides it needs, and never looks at backbone-specific
code. The image is zero-padded (raw pixels, before the backbone's own normalisation) to a
multiple of the deepest stride, so every tap has exactly ``side / stride`` pixels and skip
connections align for any input size, ``(None, None, 3)`` included; :func:`crop_logits`
cuts the padded-resolution logits back to the input's H×W. The backbone's layers are
wired straight into the segmentation model (not nested as a sub-model), so they keep the
classifier's names and ``model.get_layer("resnet50_stage4_block6_out")`` and by-name weight
transfer from a trained classifier work.
"""

from __future__ import annotations

import keras

from kcv.errors import KcvError
from kcv.layers import CropToReference, PadToMultiple
from kcv.layers.upsample import ResizeToReference
from kcv.models.backbone import build_encoder, feature_taps
from kcv.registry import get_spec
from kcv.contracts import LOGITS_LAYER

# Decoder batch norm: torchvision's momentum 0.1 (= Keras 0.9), as the ResNet family uses;
# Keras' 0.99 leaves the moving statistics stale through the first hundreds of steps.
BN_MOMENTUM = 0.9


def check_backbone_args(backbone: str, backbone_args) -> dict:
    """``backbone_args`` as a dict, its keys checked against the backbone's hyperparameters."""
    args = dict(backbone_args or {})
    known = get_spec(backbone).hyperparameters
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise KcvError(f"backbone_args {', '.join(unknown)} unknown to backbone '{backbone}'; "
                       f"it takes: {', '.join(sorted(known)) or 'none'}")
    return args


def encoder_taps(image, backbone: str, strides, multiple: int, name: str, backbone_args=None,
                 actual_strides=None):
    """``(padded image, [features at each of strides])`` of ``backbone`` applied to ``image``.

    Args:
        image: the model's input tensor (RGB in [0, 255]).
        backbone: a registered classifier with feature taps.
        strides: tap strides to return, in this order (e.g. ``(4, 32)``).
        multiple: pad H and W up to a multiple of this (the deepest effective stride).
        name: model name, prefix of the pad layer.
        backbone_args: hyperparameters for the backbone builder (``output_stride=16``,
            ``batch_norm=True``, ``alpha=0.5``...).
        actual_strides: the strides the taps really have, where ``backbone_args`` change
            them (an atrous backbone's "32" tap at ``output_stride=16``); default ``strides``.
    """
    args = check_backbone_args(backbone, backbone_args)
    padded = PadToMultiple(multiple, name=f"{name}_pad")(image)
    encoder = build_encoder(backbone, tuple(padded.shape[1:]), strides=tuple(strides), **args)
    # Re-run the encoder's own layers on `padded` and keep the tap layers' outputs: the
    # features join this model's graph directly (shared layers, no nested Model), so the
    # backbone keeps its layer names. (`clone_model` wraps its result in a Functional whose
    # non-Input inputs make Keras copy the graph; the tensors captured here are the originals.)
    taps = {feature_taps(backbone)[s]: s for s in strides}
    captured = {}

    def call_and_capture(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in taps:
            captured[taps[layer.name]] = out
        return out

    keras.models.clone_model(encoder, input_tensors=[padded], clone_function=lambda layer: layer,
                             call_function=call_and_capture)
    feats = [captured[s] for s in strides]
    actual = tuple(actual_strides or strides)
    if not _exact(encoder, feats, actual, multiple):
        # 'valid'-padded families (AlexNet) give taps a pixel short of side/stride; resize them
        # to exactly that, so skips fuse for every backbone.
        feats = [resize_like(f, stride_reference(padded, s, name), f"{name}_align{s}")
                 for f, s in zip(feats, actual)]
    return padded, feats


def _exact(encoder, feats, strides, multiple: int) -> bool:
    """Whether every tap is exactly side/stride (checked on a probe size if H×W are dynamic)."""
    side = encoder.input_shape[1:3]
    if None in side:
        side = (2 * multiple, 2 * multiple)
        shapes = encoder.compute_output_shape((1, *side, 3))
    else:
        shapes = [f.shape for f in feats]
    return all(tuple(shape[1:3]) == (side[0] // s, side[1] // s) for shape, s in zip(shapes, strides))


def stride_reference(padded, stride: int, name: str):
    """A cheap tensor of exactly the padded image's H×W / ``stride`` (the image itself at 1),
    used only for its size by :func:`resize_like`."""
    if stride == 1:
        return padded
    return keras.layers.AveragePooling2D(stride, name=f"{name}_ref{stride}")(padded)


def crop_logits(x, image, multiple: int):
    """Bring padded-resolution logits back to ``image``'s H×W; the layer is named ``logits``."""
    return CropToReference(multiple, name=LOGITS_LAYER)([x, image])


def resize_like(x, reference, name: str):
    """Bilinear resize of ``x`` to ``reference``'s H×W (exportable for dynamic sizes)."""
    return ResizeToReference(name=name)([x, reference])


def check_choice(flag: str, value, choices) -> None:
    """Raise :class:`KcvError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise KcvError(f"{flag}={value!r}: choose one of {', '.join(map(str, choices))}")
