"""Apply a :class:`~kcv.augment.policy.Policy` to batches inside ``tf.data``.

Design (why it looks like this):

- Runs on whole batches after ``Dataset.batch`` — measured 1.5× faster than per image
  (docs/design.md §8) — and in the input pipeline only, never inside the exported model.
- Every random draw is *stateless*: each batch gets a seed derived from
  ``(seed, epoch, batch index)``. The Keras layers normally draw from a stateful
  ``SeedGenerator``; inside a parallel ``Dataset.map`` the order of those draws depends on
  thread timing, so two runs with the same ``--seed`` would differ, and a resumed run
  could not replay an epoch. :class:`_BatchSeed` stands in for each layer's generator while
  the map function is traced and folds a fresh counter into the batch seed per draw.
- Segmentation: a geometric op moves image and mask with one transform (bilinear image,
  nearest mask); photometric ops leave masks alone (the Keras layers do both). Pixels
  brought in from outside the image are labelled 255 (ignored by loss and metrics): masks
  travel shifted by +1 with a constant fill of 0, which comes back as 255.
- Classification with CutMix/MixUp: labels are one-hot before mixing, so the loss sees
  soft targets (``soft_labels`` tells the training loop).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kcv import compat
from kcv.augment import layers as kcv_layers
from kcv.augment.policy import MIXING, Policy, parse_policy
from kcv.contracts import IGNORE_LABEL

VALUE_RANGE = (0.0, 255.0)


class _BatchSeed(keras.random.SeedGenerator):
    """A stand-in ``SeedGenerator``: the ``n``-th draw gets ``fold_in(base, n)``.

    Keras layers accept any ``SeedGenerator`` and call ``next()`` once per random draw;
    this one keeps no state but a trace-time counter, so the traced graph is a pure
    function of the batch seed.
    """

    def __init__(self, base):  # no super().__init__: that would create a state variable
        self._base = base
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._base, self._draws)


def build_layer(op, task: str):
    """The Keras layer for one policy :class:`~kcv.augment.policy.Op`."""
    L = keras.layers
    # Classification: reflect the border (natural-looking, no label to get wrong).
    # Segmentation: constant fill; the shifted masks turn it into the ignore label.
    fill = {"fill_mode": "reflect"} if task == "classification" else {"fill_mode": "constant", "fill_value": 0.0}
    v = op.value
    if op.name == "flip":
        return L.RandomFlip({"h": "horizontal", "v": "vertical", "hv": "horizontal_and_vertical"}[v])
    if op.name == "rotate":
        return L.RandomRotation(v / 360.0, **fill)
    if op.name == "rotate90":
        return kcv_layers.RandomRotate90(**fill)
    if op.name == "crop":
        return kcv_layers.RandomResizedCrop(v, **fill)
    if op.name == "shear":
        return L.RandomShear(x_factor=v, y_factor=v, **fill)
    if op.name == "translate":
        return L.RandomTranslation(v, v, **fill)
    if op.name == "brightness":
        return L.RandomBrightness(v, value_range=VALUE_RANGE)
    if op.name == "contrast":
        return L.RandomContrast(v, value_range=VALUE_RANGE)
    if op.name == "erasing":
        return L.RandomErasing(factor=v, value_range=VALUE_RANGE)
    if op.name == "randaugment":
        n, m = v
        # Magnitude on the paper's 0-30 scale; Keras' factor is a fraction of its maximum.
        return L.RandAugment(value_range=VALUE_RANGE, num_ops=n, factor=m / 30.0)
    if op.name == "cutmix":
        return kcv_layers.CutMix(factor=v)
    if op.name == "mixup":
        return L.MixUp(alpha=v)
    raise ValueError(op.name)  # unreachable: parse_policy checked the name


class Augmenter:
    """Callable ``(images, targets, seed) -> (images, targets)`` on one batch.

    Args:
        policy: a :class:`Policy` or a policy string (``"flip,rotate=15"``).
        task: ``classification`` or ``segmentation``.
        num_classes: for one-hot labels when the policy mixes samples.

    ``images`` are float32 ``[B, H, W, 3]`` in [0, 255]; ``targets`` int labels ``[B]``,
    one-hot/soft labels ``[B, K]``, or int masks ``[B, H, W]``; ``seed`` an int64 ``[2]``
    tensor. Masks come back int32 with 255 where no source pixel exists.
    """

    def __init__(self, policy, task: str, num_classes: int):
        self.policy = parse_policy(policy, task) if not isinstance(policy, Policy) else policy
        self.task = task
        self.num_classes = num_classes
        self.layers = [build_layer(op, task) for op in self.policy.ops]

    @property
    def soft_labels(self) -> bool:
        """True when classification targets leave the pipeline one-hot (mixing is on)."""
        return self.task == "classification" and self.policy.mixing

    def __call__(self, images, targets, seed):
        seed = tf.cast(seed, tf.int64)
        if self.task == "segmentation":
            data = {"images": images,
                    "segmentation_masks": tf.cast(targets[..., None], tf.float32) + 1.0}
        else:
            if self.soft_labels and targets.shape.rank == 1:
                targets = tf.one_hot(targets, self.num_classes)
            data = {"images": images, "labels": tf.cast(targets, tf.float32)}
        for i, (op, layer) in enumerate(zip(self.policy.ops, self.layers)):
            _install_seed(layer, tf.random.experimental.stateless_fold_in(seed, i))
            if op.kind != MIXING and self.task == "classification":
                data["images"] = layer(data["images"], training=True)
            else:
                data = layer(data, training=True)
        images = tf.clip_by_value(data["images"], *VALUE_RANGE)
        if self.task == "segmentation":
            masks = tf.cast(tf.round(data["segmentation_masks"][..., 0]), tf.int32) - 1
            return images, tf.where(masks < 0, IGNORE_LABEL, masks)
        # soft targets (mixed, or soft pseudo-labels) stay float; hard labels stay int
        soft = self.soft_labels or targets.dtype.is_floating
        labels = data["labels"] if soft else tf.cast(targets, tf.int32)
        return images, labels


def _install_seed(layer, base) -> None:
    """Point ``layer`` and its sub-layers (RandAugment's) at a fresh :class:`_BatchSeed`."""
    compat.install_seed_generator(layer, _BatchSeed(base))
