"""Reusable layers and block helpers; every custom layer is Keras-serialisable."""

from kcv.layers.adaptive_pool import AdaptiveAvgPool2D
from kcv.layers.conv_bn import conv_bn_act, normalized_input
from kcv.layers.deformable import DeformableConv2D
from kcv.layers.resize import CropToReference, PadToMultiple
from kcv.layers.squeeze_excite import squeeze_excite

__all__ = ["AdaptiveAvgPool2D", "conv_bn_act", "DeformableConv2D", "normalized_input", "PadToMultiple",
           "CropToReference", "squeeze_excite"]
