"""Reusable layers and block helpers; every custom layer is Keras-serialisable."""

from kcv.layers.adaptive_pool import AdaptiveAvgPool2D
from kcv.layers.aspp import aspp, separable_conv_bn
from kcv.layers.conv_bn import conv_bn_act, normalized_input
from kcv.layers.deformable import DeformableConv2D
from kcv.layers.lse_pool import GlobalLSEPooling2D
from kcv.layers.preprocess import ImageNetPreprocessing
from kcv.layers.resize import CropToReference, PadToMultiple
from kcv.layers.squeeze_excite import squeeze_excite
from kcv.layers.upsample import BilinearKernel, ResizeToReference

__all__ = ["AdaptiveAvgPool2D", "aspp", "BilinearKernel", "conv_bn_act", "DeformableConv2D",
           "GlobalLSEPooling2D", "ImageNetPreprocessing", "normalized_input", "PadToMultiple",
           "CropToReference", "ResizeToReference",
           "separable_conv_bn", "squeeze_excite"]
