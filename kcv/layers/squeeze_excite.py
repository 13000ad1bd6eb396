"""Squeeze-and-excitation (Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018,
arXiv:1709.01507).

Global average pool ("squeeze") → FC reducing channels by ``ratio`` → ReLU → FC back → sigmoid
→ channel-wise scaling ("excitation"). The FCs are 1×1 convolutions on the pooled 1×1 map,
which is the same maths and keeps the tensor 4-D for TFLite.
"""

from __future__ import annotations

from keras import layers


def squeeze_excite(x, ratio: int = 16, name: str = "se", reduced_filters: int | None = None,
                   activation: str = "relu"):
    """Apply an SE block to ``x`` and return the rescaled tensor.

    Args:
        x: NHWC feature map.
        ratio: channel reduction of the bottleneck FC (16 in the SE paper).
        name: layer-name prefix (``{name}_squeeze``, ``{name}_reduce``, ``{name}_expand``...).
        reduced_filters: bottleneck width, overriding ``channels // ratio`` (EfficientNet
            sizes it from the block's *input* channels).
        activation: bottleneck activation (``relu`` in SENet, ``swish`` in EfficientNet).
    """
    channels = x.shape[-1]
    hidden = reduced_filters or max(1, channels // ratio)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(hidden, 1, activation=activation, name=f"{name}_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_excite")([x, s])
