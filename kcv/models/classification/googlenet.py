"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015,
arXiv:1409.4842), following the paper's table 1.

Stem: conv 7×7/2 64 → max-pool 3×3/2 → conv 1×1 64 → conv 3×3 192 → max-pool 3×3/2; then
inception 3a, 3b, max-pool, 4a–4e, max-pool, 5a, 5b, global average pool (the paper's 7×7
pool at 224 px), dropout 0.4, linear. Each inception module concatenates four branches:
1×1; 1×1 reduce → 3×3; 1×1 reduce → 5×5; 3×3/1 max-pool → 1×1 projection. The 1×1
bottlenecks before the 3×3 and 5×5 convs are what keep the network at ~7M parameters.

Two auxiliary classifiers, on 4a and 4d, exist in the TRAINING model only: average pool to
4×4 → 1×1 conv 128 → FC 1024 → dropout 0.7 → linear. Their losses are added with weight
0.3 (:class:`AuxiliaryHeadsModel`); the inference model of :func:`kcv.models.inference_model`
keeps ``outputs[0]`` only, so exported files have one output.

Differences from the paper, on purpose: no local response normalisation in the stem (no
parameters; dropped by torchvision too), and the auxiliary pool is adaptive to 4×4 (the
paper's 5×5/3 pool gives 4×4 only at 224 px) so every input size ≥ 32 px works.
``batch_norm=True`` adds BatchNorm after each conv (torchvision's variant; not in the paper).
Unlike torchvision, the "5×5" branch really is 5×5 (torchvision's uses 3×3 kernels), so
parameter counts are checked against the paper's table 1, not torchvision's 6,624,904.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kcv.layers import AdaptiveAvgPool2D, conv_bn_act, normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

# Table 1: (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj) of each module.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
AUX_WEIGHT = 0.3


@keras.saving.register_keras_serializable(package="kcv")
class AuxiliaryHeadsModel(keras.Model):
    """A functional training model whose outputs are ``[main, aux_1, ..., aux_n]``.

    Training loss = L(main) + ``aux_weight`` · Σ L(aux_i), with L the loss given to
    ``compile`` applied to each head; evaluation loss and all metrics use the main head
    only, so metric names stay ``accuracy``/``val_accuracy`` and ``val_loss`` is comparable
    with single-head models. Build it like a functional model:
    ``AuxiliaryHeadsModel(inputs, [main, aux1, aux2], aux_weight=0.3)``.
    """

    def __init__(self, *args, aux_weight: float = AUX_WEIGHT, **kwargs):
        super().__init__(*args, **kwargs)
        self.aux_weight = float(aux_weight)

    def _head_loss(self, y, y_pred, sample_weight):
        loss = keras.losses.get(self.loss)
        if isinstance(loss, keras.losses.Loss):
            return loss(y, y_pred, sample_weight=sample_weight)
        per_sample = loss(y, y_pred)  # a plain loss function, e.g. compile(loss="...")
        if sample_weight is not None:
            per_sample = per_sample * ops.cast(sample_weight, per_sample.dtype)
        return ops.mean(per_sample)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        main, *aux = y_pred
        total = self._head_loss(y, main, sample_weight)
        if training and aux:
            total = total + self.aux_weight * ops.sum(
                ops.stack([self._head_loss(y, a, sample_weight) for a in aux]))
        for extra in self.losses:  # weight regularisers, if any
            total = total + ops.cast(extra, total.dtype)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[0], sample_weight)

    def get_config(self):
        return {**super().get_config(), "aux_weight": self.aux_weight}


def conv_relu(x, filters: int, kernel_size, name: str, strides=1, batch_norm: bool = False):
    """'same' conv + ReLU (conv → BN → ReLU with ``batch_norm``); the ReLU output is ``name``."""
    if not batch_norm:
        return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", activation="relu",
                             kernel_initializer="he_normal", name=name)(x)
    x = conv_bn_act(x, filters, kernel_size, strides, name=name, activation=None)
    return layers.Activation("relu", name=name)(x)


def inception_module(x, widths, name: str, batch_norm: bool = False):
    """Inception v1 module: four branches concatenated along channels (``{name}_out``)."""
    n1, n3r, n3, n5r, n5, npool = widths
    b1 = conv_relu(x, n1, 1, f"{name}_1x1", batch_norm=batch_norm)
    b2 = conv_relu(x, n3r, 1, f"{name}_3x3_reduce", batch_norm=batch_norm)
    b2 = conv_relu(b2, n3, 3, f"{name}_3x3", batch_norm=batch_norm)
    b3 = conv_relu(x, n5r, 1, f"{name}_5x5_reduce", batch_norm=batch_norm)
    b3 = conv_relu(b3, n5, 5, f"{name}_5x5", batch_norm=batch_norm)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_relu(b4, npool, 1, f"{name}_pool_proj", batch_norm=batch_norm)
    return layers.Concatenate(name=f"{name}_out")([b1, b2, b3, b4])


def auxiliary_head(x, num_classes: int, name: str, batch_norm: bool = False):
    """Auxiliary classifier: pool to 4×4, 1×1 conv 128, FC 1024, dropout 0.7, linear."""
    x = AdaptiveAvgPool2D(4, name=f"{name}_pool")(x)
    x = conv_relu(x, 128, 1, f"{name}_conv", batch_norm=batch_norm)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", kernel_initializer="he_normal", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, name=f"{name}_logits")(x)


def build_googlenet(num_classes: int, input_shape, dropout: float = 0.4, batch_norm: bool = False,
                    aux_weight: float = AUX_WEIGHT, features_only: bool = False,
                    name: str = "googlenet") -> keras.Model:
    """Build GoogLeNet: ``[logits, aux1_logits, aux2_logits]`` (an :class:`AuxiliaryHeadsModel`).

    Args:
        dropout: rate before the main linear layer (0.4 in the paper).
        batch_norm: BatchNorm after every conv (not in the paper).
        aux_weight: weight of each auxiliary loss (0.3 in the paper).
        features_only: return the trunk without any head (taps ``{name}_conv1`` ...
            ``{name}_inception5b_out``); it builds for any input size.
    """
    inputs, x = normalized_input(input_shape)
    x = conv_relu(x, 64, 7, f"{name}_conv1", strides=2, batch_norm=batch_norm)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool1")(x)
    x = conv_relu(x, 64, 1, f"{name}_conv2_reduce", batch_norm=batch_norm)
    x = conv_relu(x, 192, 3, f"{name}_conv2", batch_norm=batch_norm)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool2")(x)
    aux_inputs = []
    for key, widths in INCEPTION.items():
        if key in ("4a", "5a"):
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool{key[0]}")(x)
        x = inception_module(x, widths, f"{name}_inception{key}", batch_norm)
        if key in ("4a", "4d"):
            aux_inputs.append(x)
    if features_only:
        return keras.Model(inputs, x, name=f"{name}_features")
    x = layers.GlobalAveragePooling2D(name=f"{name}_avgpool")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    aux = [auxiliary_head(a, num_classes, f"{name}_aux{i}", batch_norm)
           for i, a in enumerate(aux_inputs, start=1)]
    return AuxiliaryHeadsModel(inputs, [logits, *aux], aux_weight=aux_weight, name=name)


@register("googlenet", task="classification", family="googlenet", min_size=32,
          paper="Szegedy et al. 2014, arXiv:1409.4842",
          taps={2: "googlenet_conv1", 4: "googlenet_conv2", 8: "googlenet_inception3b_out",
                16: "googlenet_inception4e_out", 32: "googlenet_inception5b_out"},
          reference={"params": 6_960_845, "gflops": 1.5,
                     "source": "paper table 1: its 'params' column (weights only, K = 1024, "
                               "inference model without auxiliary heads) and 1.5 B multiply-adds"},
          train_defaults={"img_size": 64, "epochs": 10, "batch_size": 32, "lr": 1e-3,
                          "model_args": {"batch_norm": True}})
def googlenet(num_classes, input_shape=(224, 224, 3), dropout=0.4, batch_norm=False,
              aux_weight=AUX_WEIGHT, features_only=False):
    """GoogLeNet with its two auxiliary heads (training model)."""
    return build_googlenet(num_classes, input_shape, dropout, batch_norm, aux_weight, features_only)
