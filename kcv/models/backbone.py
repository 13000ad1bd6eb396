"""Feature taps of any registered classifier, for segmentation decoders.

A classifier registers ``taps={4: layer, 8: layer, 16: layer, 32: layer}`` (and 2 where
it has one); its builder accepts ``features_only=True`` and then stops before the head, so
it builds for any input size, ``(None, None, 3)`` included. Decoders call
:func:`build_encoder` and read only the returned tensors — never backbone-specific code
(keras-hub ``FeaturePyramidBackbone``, smp ``encoders``).
"""

from __future__ import annotations

import keras

from kcv.errors import KcvError
from kcv.registry import get_spec, list_models


def tap_backbones() -> list[str]:
    """Names of the classifiers that expose feature taps."""
    return [n for n in list_models("classification") if get_spec(n).taps]


def feature_taps(name: str) -> dict[int, str]:
    """``{stride: layer_name}`` of classifier ``name``."""
    spec = get_spec(name)
    if spec.task != "classification" or not spec.taps:
        raise KcvError(f"backbone '{name}' exposes no feature taps; choose one of "
                       f"{', '.join(tap_backbones()) or 'none registered'}")
    return dict(spec.taps)


def build_encoder(name: str, input_shape, strides=(4, 8, 16, 32), **hyperparameters) -> keras.Model:
    """A model mapping an image to the features of ``name`` at each of ``strides``.

    Args:
        name: a registered classifier with taps.
        input_shape: ``(H, W, 3)``, ``None`` sides allowed.
        strides: which taps to return, in this order.
        **hyperparameters: passed to the classifier builder (e.g. ``output_stride=16``
            for an atrous ResNet, where the family supports it).

    Returns:
        ``keras.Model(image, [features at each stride])``; its layers keep the classifier's
        names, so weights transfer from a trained classifier by name.
    """
    taps = feature_taps(name)
    missing = [s for s in strides if s not in taps]
    if missing:
        raise KcvError(f"backbone '{name}' has no tap at stride(s) {missing}; it has {sorted(taps)}")
    spec = get_spec(name)
    trunk = spec.builder(num_classes=2, input_shape=tuple(input_shape), features_only=True, **hyperparameters)
    outputs = [trunk.get_layer(taps[s]).output for s in strides]
    return keras.Model(trunk.inputs, outputs, name=f"{name}_encoder")
