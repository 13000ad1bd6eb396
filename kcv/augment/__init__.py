"""Data augmentation for the tf.data pipeline: policy strings, segmentation-aware layers.

``parse_policy("flip,rotate=15,cutmix")`` checks a policy; ``Augmenter(policy, task,
num_classes)`` applies it to batches with stateless per-batch seeds. Built from Keras 3
core preprocessing layers; the three it lacks in usable form live in ``layers.py``.
"""

from kcv.augment.augmenter import Augmenter, build_layer
from kcv.augment.policy import OPS, Op, Policy, default_policy, parse_policy

__all__ = ["Augmenter", "OPS", "Op", "Policy", "build_layer", "default_policy", "parse_policy"]
