"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 1998, section II-B).

C1 conv 5×5 6 → S2 subsampling → C3 conv 5×5 16 through the paper's connection table → S4
subsampling → C5 conv 5×5 120 → F6 FC 84 → output. As in the paper:

- every unit squashes with f(a) = 1.7159 · tanh(2a/3) (:func:`scaled_tanh`);
- a subsampling layer adds each 2×2 block, multiplies by one trainable coefficient per map,
  adds a trainable bias and squashes (average pool + a per-map 1×1 depthwise conv: 2
  parameters per map, 12 in S2 and 32 in S4);
- C3 map j sees only the S2 maps of table I (:data:`C3_TABLE`, 60 of the 96 connections;
  "to break symmetry" and save parameters: 1,516 instead of 2,416);
- C5 is a 5×5 convolution, 1×1 at the paper's 32×32 input (larger inputs give a larger C5
  map, which is flattened).

Trainable parameters C1–F6 on a 32×32 grayscale input: 156 + 12 + 1,516 + 32 + 48,120 +
10,164 = 60,000, the paper's figure. The one deliberate difference: the output is a linear
layer trained with cross-entropy instead of the paper's Euclidean RBF units with fixed 7×12
ASCII-bitmap codes, which only make sense for characters.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from kcv.layers import normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

# Table I: the S2 maps each C3 map is connected to.
C3_TABLE = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
            (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
            (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5))


@keras.saving.register_keras_serializable(package="kcv")
def scaled_tanh(x):
    """LeCun's squashing function 1.7159 · tanh(2x/3): f(±1) = ±1, maximal gain near there."""
    return 1.7159 * ops.tanh(x * (2.0 / 3.0))


@keras.saving.register_keras_serializable(package="kcv")
class ConnectionTableConv2D(keras.layers.Layer):
    """A 'valid' convolution where output map j sees only the input maps ``table[j]``.

    Only the connected kernels are weights (one ``k×k`` kernel per connection, plus a bias
    per output map); the dense kernel is assembled with a constant 0/1 scatter matrix, so
    the exported graph is a plain CONV_2D on a constant-folded kernel.

    Args:
        table: ``table[j]`` = input channels of output map ``j``.
        kernel_size: square kernel side.
    """

    def __init__(self, table, kernel_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.table = [list(map(int, row)) for row in table]
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        cin, cout = int(input_shape[-1]), len(self.table)
        pairs = [(i, j) for j, row in enumerate(self.table) for i in row]
        if max(i for i, _ in pairs) >= cin:
            raise ValueError(f"connection table refers to input map {max(i for i, _ in pairs)} "
                             f"but the input has {cin}")
        scatter = np.zeros((len(pairs), cin * cout), np.float32)
        for n, (i, j) in enumerate(pairs):
            scatter[n, i * cout + j] = 1.0
        self._scatter, self._cin = scatter, cin
        k = self.kernel_size
        fan_in = k * k * len(pairs) / cout
        self.kernel = self.add_weight(shape=(k * k, len(pairs)), name="kernel",
                                      initializer=keras.initializers.RandomUniform(
                                          -2.4 / fan_in, 2.4 / fan_in))  # the paper's init
        self.bias = self.add_weight(shape=(cout,), name="bias", initializer="zeros")

    def call(self, x):
        k, cout = self.kernel_size, len(self.table)
        dense = ops.matmul(self.kernel, ops.convert_to_tensor(self._scatter, dtype=self.kernel.dtype))
        dense = ops.reshape(dense, (k, k, self._cin, cout))
        return ops.conv(x, ops.cast(dense, x.dtype), padding="valid") + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        def side(d):
            return None if d is None else d - self.kernel_size + 1
        return (input_shape[0], side(input_shape[1]), side(input_shape[2]), len(self.table))

    def get_config(self):
        return {**super().get_config(), "table": self.table, "kernel_size": self.kernel_size}


def subsampling(x, name: str):
    """2×2 sum × trainable coefficient + trainable bias per map, then the squashing function."""
    x = layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    x = layers.DepthwiseConv2D(1, depthwise_initializer="ones", name=f"{name}_scale")(x)
    return layers.Activation(scaled_tanh, name=name)(x)


def build_lenet5(num_classes: int, input_shape, connection_table: bool = True,
                 name: str = "lenet5") -> keras.Model:
    """Build LeNet-5 (logits).

    Args:
        connection_table: C3 uses table I (the paper); ``False`` connects all six S2 maps.
    """
    inputs, x = normalized_input(input_shape)
    x = layers.Conv2D(6, 5, activation=scaled_tanh, name=f"{name}_c1")(x)
    x = subsampling(x, f"{name}_s2")
    if connection_table:
        x = ConnectionTableConv2D(C3_TABLE, 5, name=f"{name}_c3_conv")(x)
        x = layers.Activation(scaled_tanh, name=f"{name}_c3")(x)
    else:
        x = layers.Conv2D(16, 5, activation=scaled_tanh, name=f"{name}_c3")(x)
    x = subsampling(x, f"{name}_s4")
    x = layers.Conv2D(120, 5, activation=scaled_tanh, name=f"{name}_c5")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(84, activation=scaled_tanh, name=f"{name}_f6")(x)
    logits = layers.Dense(num_classes, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name)


@register("lenet5", task="classification", family="lenet", min_size=32,
          paper="LeCun et al. 1998",
          reference={"params": 60_000, "gflops": 0.000341, "img_size": 32,
                     "source": "paper: trainable C1–F6 on 32×32 grayscale (its output RBF units "
                               "are fixed), 340,908 connections"},
          train_defaults={"img_size": 32, "epochs": 10, "batch_size": 32, "lr": 1e-3})
def lenet5(num_classes, input_shape=(32, 32, 3), connection_table=True):
    """LeNet-5 at 32×32 by default, as in the paper."""
    return build_lenet5(num_classes, input_shape, connection_table)
