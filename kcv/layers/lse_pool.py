"""Global log-sum-exp pooling of class score maps (Pinheiro & Collobert, "From Image-level to
Pixel-level Labeling with Convolutional Networks", CVPR 2015, eq. 4):

    s_c = (1/r) · log( (1/HW) · Σ_ij exp(r · s_c,ij) )

r → 0 is the average (GAP), r → ∞ the maximum (the global max pooling of Oquab et al.,
"Is object localization for free?", CVPR 2015). Put after a 1×1 convolution that gives one
score map per class, it lets a classifier be trained on image labels alone while its maps
stay spatial evidence: a class's score is high only where some cells are, so cells away from
the object are pushed down (with a one-vs-rest loss, ``--loss bce``, on every image where the
class is absent). Keras has global average and max pooling but nothing in between.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kcv")
class GlobalLSEPooling2D(keras.layers.Layer):
    """``[B, H, W, C] → [B, C]``: the smooth maximum above, with sharpness ``r`` > 0."""

    def __init__(self, r: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        if not r > 0:
            raise ValueError(f"GlobalLSEPooling2D: r must be positive, got {r}")
        self.r = float(r)

    def call(self, x):
        shape = ops.shape(x)
        cells = ops.cast(shape[1] * shape[2], x.dtype)
        # logsumexp subtracts the maximum first: no overflow for large r·x
        return (ops.logsumexp(self.r * x, axis=(1, 2)) - ops.log(cells)) / self.r

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "r": self.r}
