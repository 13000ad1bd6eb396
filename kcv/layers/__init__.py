"""Reusable layers and block helpers; every custom layer is Keras-serialisable."""

from kcv.layers.conv_bn import conv_bn_act, normalized_input
from kcv.layers.resize import CropToReference, PadToMultiple

__all__ = ["conv_bn_act", "normalized_input", "PadToMultiple", "CropToReference"]
