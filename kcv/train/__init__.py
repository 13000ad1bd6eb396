"""Training: the loop (the one place that compiles and fits), its callbacks, and the
extension point for distillation/transfer/self-training (:class:`TrainPlugin`).

Importing this package registers the plugins of :mod:`kcv.train.transfer`,
:mod:`kcv.train.distill` and :mod:`kcv.train.self_training`, in that order (the student
gets its pretrained weights before the distiller wraps it).
"""

from kcv.train.loop import TrainConfig, TrainPlugin, register_plugin, train
from kcv.train import transfer, distill, self_training  # noqa: E402,F401  (register plugins)

__all__ = ["TrainConfig", "TrainPlugin", "register_plugin", "train"]
