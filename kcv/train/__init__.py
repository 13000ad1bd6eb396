"""Training: the loop (the one place that compiles and fits), its callbacks, and the
extension point for distillation/transfer/self-training (:class:`TrainPlugin`)."""

from kcv.train.loop import TrainConfig, TrainPlugin, register_plugin, train

__all__ = ["TrainConfig", "TrainPlugin", "register_plugin", "train"]
