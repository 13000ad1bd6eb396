"""The training loop: the one place in kcv that compiles and fits a model.

``train(TrainConfig(arch="unet"))`` resolves the configuration (flags, then the
architecture's ``train_defaults``, then global defaults), loads the data, builds the model,
fits it with a progress bar and writes the whole run directory of DESIGN §4.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from kcv import losses, metrics, runs
from kcv.errors import KcvError
from kcv.registry import create_model, get_spec
from kcv.train.callbacks import RunWriter

OPTIMIZERS = ("adam", "sgd", "adamw")
GLOBAL_DEFAULTS = {"img_size": 64, "epochs": 10, "batch_size": 32, "lr": 1e-3}


@dataclass
class TrainConfig:
    """Every argument of ``kcv train``; ``None`` means "the architecture's default"."""

    arch: str
    data: str = "shapes"
    epochs: int | None = None
    batch_size: int | None = None
    img_size: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    loss: str = "ce"
    seed: int = 0
    val_split: float = 0.2
    out: str = str(runs.DEFAULT_ROOT)
    name: str | None = None
    model_args: dict = field(default_factory=dict)
    backbone: str | None = None  # k-NN only: a trained classifier run whose features it uses
    verbose: int = 1

    def resolved(self) -> "TrainConfig":
        """A copy with defaults filled in from the registry entry, and values checked."""
        spec = get_spec(self.arch)
        d = {**GLOBAL_DEFAULTS, **{k: v for k, v in spec.train_defaults.items() if k != "model_args"}}
        cfg = dataclasses.replace(self)
        for key in GLOBAL_DEFAULTS:
            if getattr(cfg, key) is None:
                setattr(cfg, key, d[key])
        cfg.model_args = {**spec.train_defaults.get("model_args", {}), **self.model_args}
        _check(cfg, spec)
        return cfg


def _check(cfg: TrainConfig, spec) -> None:
    for flag, value in (("--epochs", cfg.epochs), ("--batch-size", cfg.batch_size)):
        if int(value) < 1:
            raise KcvError(f"{flag} {value}: must be at least 1")
    if cfg.img_size < spec.min_size:
        raise KcvError(f"--img-size {cfg.img_size}: {spec.name} needs at least {spec.min_size} px")
    if not cfg.lr > 0:
        raise KcvError(f"--lr {cfg.lr}: must be positive")
    if cfg.optimizer not in OPTIMIZERS:
        raise KcvError(f"--optimizer '{cfg.optimizer}': choose one of {', '.join(OPTIMIZERS)}")


def make_optimizer(name: str, lr: float):
    """Adam, SGD with Nesterov momentum 0.9, or AdamW (weight decay 1e-4)."""
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    return keras.optimizers.AdamW(lr, weight_decay=1e-4)


def versions() -> dict:
    import tensorflow as tf

    import kcv

    return {"kcv": kcv.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def train(config: TrainConfig) -> Path:
    """Train ``config.arch`` and write its run directory; return the directory."""
    from kcv.data.pipeline import load_data

    if config.backbone is not None or get_spec(config.arch).family == "knn":
        from kcv.train.knn import fit_knn  # no gradients: one pass stores the reference set

        return fit_knn(config)
    cfg = config.resolved()
    spec = get_spec(cfg.arch)
    keras.utils.set_random_seed(cfg.seed)
    source = load_data(cfg.data, spec.task, cfg.img_size, seed=cfg.seed, val_split=cfg.val_split)
    model = create_model(cfg.arch, source.num_classes, (cfg.img_size, cfg.img_size, 3), **cfg.model_args)

    run_dir = runs.new_run_dir(cfg.out, cfg.name or cfg.arch)
    record = {**dataclasses.asdict(cfg), "task": spec.task, "num_classes": source.num_classes,
              "class_names": source.class_names, "num_train": source.num_train,
              "num_val": source.num_val, "params": int(model.count_params()),
              "versions": versions()}
    record.pop("verbose")
    runs.write_json(run_dir / runs.CONFIG_FILE, record)

    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.lr),
                  loss=losses.get_loss(cfg.loss, spec.task),
                  metrics=metrics.training_metrics(spec.task, source.num_classes),
                  jit_compile=False)  # XLA measured slower on CPU (DESIGN §8); --jit opts in
    writer = RunWriter(run_dir, source.num_train, metrics.monitor(spec.task))
    train_ds = source.dataset("train", cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_ds = source.dataset("val", cfg.batch_size)
    if cfg.verbose:
        print(f"training {cfg.arch} ({model.count_params():,} params) on {source.spec}: "
              f"{source.num_train} train / {source.num_val} val images at {cfg.img_size} px "
              f"-> {run_dir}", flush=True)
    t0 = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=[writer],
              shuffle=False, verbose=_fit_verbosity(cfg.verbose))
    final = finalize(run_dir, source, cfg.batch_size, writer.rows, spec.task, cfg.arch)
    final["train_seconds"] = round(time.perf_counter() - t0, 1)
    runs.write_json(run_dir / "metrics.json", final)
    return run_dir


def _fit_verbosity(verbose: int) -> int:
    """A live progress bar on a terminal; one line per epoch in logs and pipes."""
    import sys

    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


def finalize(run_dir: Path, source, batch_size: int, rows, task: str, title: str) -> dict:
    """Evaluate the best model on the validation split; write ``curves.png``; return metrics."""
    from kcv.viz.curves import plot_curves

    best = keras.saving.load_model(run_dir / runs.MODEL_FILE)
    val_ds = source.dataset("val", batch_size)
    scores = best.evaluate(val_ds, verbose=0, return_dict=True)
    if task == "classification":
        final = {"val_accuracy": float(scores["accuracy"]),
                 "val_top5_accuracy": float(scores["top5_accuracy"]),
                 "val_loss": float(scores["loss"])}
    else:
        cm = np.zeros((source.num_classes,) * 2, np.int64)
        for x, y in val_ds.as_numpy_iterator():
            pred = np.argmax(best(x, training=False), axis=-1)
            cm += metrics.confusion_matrix(y, pred, source.num_classes)
        final = {**metrics.segmentation_report(cm, source.class_names), "val_loss": float(scores["loss"])}
    final["best_epoch"] = int(max(rows, key=lambda r: r.get(metrics.monitor(task), -1))["epoch"])
    final["epochs"] = len(rows)
    plot_curves(rows, run_dir / "curves.png", title=title)
    return final
