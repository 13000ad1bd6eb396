"""Training: the loop (the one place that compiles and fits) and its callbacks."""

from kcv.train.loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
