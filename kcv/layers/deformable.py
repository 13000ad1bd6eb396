"""Modulated deformable convolution, DCNv2 (Zhu, Hu, Lin & Dai, "Deformable ConvNets v2: More
Deformable, Better Results", CVPR 2019, arXiv:1811.11168; v1: Dai et al. 2017, arXiv:1703.06211).

    y(p) = Σ_k w_k · x(p + p_k + Δp_k) · Δm_k

A zero-initialised convolution with the same kernel, stride and dilation as the layer predicts,
at every output position, 2·K² offsets ``Δp_k`` (``(dy, dx)`` per kernel tap) and K² modulation
logits; a sigmoid turns the logits into masks ``Δm_k`` in (0, 1). At initialisation the offsets
are 0 and the masks 0.5, as in the paper, so the layer starts as half an ordinary convolution.

Sampling is bilinear with zero padding outside the image (as torchvision ``deform_conv2d``),
written with ``keras.ops`` only: coordinates → ``floor`` → four corner indices into the
input flattened to ``(B·H·W, C)`` → ONE ``take`` along axis 0 (TFLite's built-in ``GATHER``:
no ``GatherNd``, no ``batch_dims``, int32 indices, so the converter needs no Flex op) →
weighted sum → a 1×1 convolution over the ``K²·C`` sampled values (built-in ``CONV_2D``).
No tensor has more than 4 dimensions, so fp32, fp16, dynamic-range and full-int8 TFLite all
convert and run.

Memory: the gathered corners, ``B·Ho·Wo·K²·4·C`` floats, are kept for backprop. In
``resnet50_dcn`` that is ≈ 110 MB per 224-px image over the 13 deformable layers (≈ 9 MB at
64 px), on top of the ordinary activations: train at 224 px with batches of 8–16 on a CPU.
"""

from __future__ import annotations

import keras
from keras import layers, ops


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)


def _same_pad_before(size, out, stride, kernel, dilation):
    """Top/left padding of TensorFlow's ``same`` (``total // 2``; the extra row goes after)."""
    total = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    if isinstance(total, int):
        return max(total, 0) // 2
    return ops.maximum(total, 0) // 2


@keras.saving.register_keras_serializable(package="kcv")
class DeformableConv2D(layers.Layer):
    """Modulated deformable 2-D convolution (DCNv2), a drop-in for ``keras.layers.Conv2D``.

    Same ``kernel`` shape ``(K, K, C_in, filters)`` and the same output size and padding
    convention as ``Conv2D``, so weights of an ordinary convolution load into it by name (the
    offset branch then starts from zero). The offset/mask branch is the sub-layer ``offset``.

    Args:
        filters: output channels.
        kernel_size: ``K`` or ``(Kh, Kw)``.
        strides: stride of the sampling grid.
        padding: ``"same"`` (TensorFlow's convention) or ``"valid"``.
        dilation_rate: spacing of the regular grid ``p_k`` that the offsets deform.
        use_bias: add a bias after the convolution.
        kernel_initializer / bias_initializer: of the main convolution. The offset branch is
            always zero-initialised (the paper's Δp = 0, Δm = 0.5 start).
    """

    def __init__(self, filters: int, kernel_size=3, strides=1, padding: str = "same",
                 dilation_rate=1, use_bias: bool = True, kernel_initializer="he_normal",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size)
        self.strides = _pair(strides)
        self.dilation_rate = _pair(dilation_rate)
        self.padding = str(padding).lower()
        if self.padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        kh, kw = self.kernel_size
        self.offset = layers.Conv2D(3 * kh * kw, self.kernel_size, strides=self.strides,
                                    padding=self.padding, dilation_rate=self.dilation_rate,
                                    kernel_initializer="zeros", bias_initializer="zeros",
                                    name="offset")

    def build(self, input_shape):
        channels = input_shape[-1]
        self.offset.build(input_shape)
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_size + (channels, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def _grid(self, size, out, axis):
        """Regular sampling positions ``o·s − pad + k·d``: shape ``(out, K)`` along one axis."""
        s, k, d = self.strides[axis], self.kernel_size[axis], self.dilation_rate[axis]
        pad = _same_pad_before(size, out, s, k, d) if self.padding == "same" else 0
        starts = ops.cast(ops.arange(out) * s - pad, "float32")
        taps = ops.cast(ops.arange(k) * d, "float32")
        return starts[:, None] + taps[None, :]

    @staticmethod
    def _dim(t, axis):
        return t.shape[axis] if t.shape[axis] is not None else ops.shape(t)[axis]

    def _positions(self, om, h, w):
        """Sampling rows/columns ``(B, Ho, Wo, K²)`` in a frame padded by one zero pixel."""
        kh, kw = self.kernel_size
        kk = kh * kw
        ho, wo = self._dim(om, 1), self._dim(om, 2)
        gy = ops.broadcast_to(self._grid(h, ho, 0)[:, None, :, None], (ho, wo, kh, kw))
        gx = ops.broadcast_to(self._grid(w, wo, 1)[None, :, None, :], (ho, wo, kh, kw))
        # offsets are interleaved (dy, dx) per tap; the +1 enters the padded frame. Clipping to
        # [-1, size + 2] changes nothing (such points read only padding zeros) but keeps huge
        # offsets from overflowing the int32 indices.
        y = ops.reshape(gy, (1, ho, wo, kk)) + om[..., 0:2 * kk:2] + 1.0
        x = ops.reshape(gx, (1, ho, wo, kk)) + om[..., 1:2 * kk:2] + 1.0
        return (ops.clip(y, -1.0, ops.cast(h + 2, "float32")),
                ops.clip(x, -1.0, ops.cast(w + 2, "float32")))

    def call(self, x):
        kk = self.kernel_size[0] * self.kernel_size[1]
        channels = x.shape[-1]
        om = ops.cast(self.offset(x), "float32")  # positions in float32 even under mixed precision
        h, w = self._dim(x, 1), self._dim(x, 2)
        ho, wo = self._dim(om, 1), self._dim(om, 2)
        hp, wp = h + 2, w + 2
        y, xx = self._positions(om, h, w)
        mask = ops.sigmoid(om[..., 2 * kk:])
        y0, x0 = ops.floor(y), ops.floor(xx)
        wy1, wx1 = y - y0, xx - x0
        wy0, wx0 = 1.0 - wy1, 1.0 - wx1

        def clip_index(v, limit):
            return ops.cast(ops.clip(v, 0.0, ops.cast(limit - 1, "float32")), "int32")

        y0i, y1i = clip_index(y0, hp), clip_index(y0 + 1.0, hp)
        x0i, x1i = clip_index(x0, wp), clip_index(x0 + 1.0, wp)
        # Four corners, corner-major along the last axis; every tensor stays 4-D or less, which
        # the TFLite kernels (and their int8 versions) require.
        base = ops.reshape(ops.arange(self._dim(x, 0), dtype="int32") * (hp * wp), (-1, 1, 1, 1))
        index = ops.concatenate([y0i * wp + x0i, y0i * wp + x1i, y1i * wp + x0i, y1i * wp + x1i],
                                axis=-1) + base
        weight = ops.concatenate([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1], axis=-1)
        weight = weight * ops.concatenate([mask] * 4, axis=-1)
        flat = ops.reshape(ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), (-1, channels))
        corners = ops.take(flat, ops.reshape(index, (-1, ho * wo, 4 * kk)), axis=0)  # (B, HoWo, 4K², C)
        corners = corners * ops.cast(ops.reshape(weight, (-1, ho * wo, 4 * kk, 1)), corners.dtype)
        sampled = ops.sum(ops.reshape(corners, (-1, 4, kk * channels)), axis=1)  # tap-major, as kernel
        sampled = ops.reshape(sampled, (-1, ho, wo, kk * channels))
        kernel = ops.reshape(self.kernel, (1, 1, kk * channels, self.filters))
        out = ops.conv(sampled, kernel, strides=1, padding="valid")
        if self.use_bias:
            out = out + self.bias
        return out

    def compute_output_shape(self, input_shape):
        return self.offset.compute_output_shape(input_shape)[:-1] + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "dilation_rate": self.dilation_rate, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
