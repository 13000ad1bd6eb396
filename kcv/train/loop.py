"""The training loop: the one place in kcv that compiles and fits a model.

``train(TrainConfig(arch="unet"))`` resolves the configuration (flags, then the
architecture's ``train_defaults``, then global defaults), loads the data, builds the model
under the chosen precision and ``tf.distribute`` strategy, fits it on an augmented
``tf.data`` stream and writes the whole run directory of docs/design.md §4.
``train(TrainConfig(resume="saved_models/unet"))`` continues a run at its next epoch.

Extension points (distillation, transfer learning, self-training): a :class:`TrainPlugin`
registered with :func:`register_plugin` can replace or wrap the model before it is
compiled, change the compile arguments, add callbacks, choose what ``model.keras``
holds, and add entries to ``config.json``, without touching this file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from kcv import compat, losses, metrics, runs
from kcv.errors import KcvError
from kcv.registry import create_model, get_spec
from kcv.train import distribute
from kcv.train.callbacks import LAST_FILE, NanGuard, RunWriter, finalize, float32_outputs, read_state, versions
from kcv.train.class_weights import parse_class_weights, resolve_class_weights
from kcv.train.fused_bn import fused_batch_norm
from kcv.contracts import CONFIG_FILE, METRICS_FILE

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
GLOBAL_DEFAULTS = {"img_size": 64, "epochs": 10, "batch_size": 32, "lr": 1e-3}
NOT_RECORDED = ("verbose", "resume")


@dataclass
class TrainConfig:
    """Every argument of ``kcv train``; ``None`` means "the architecture's default".

    ``batch_size`` is global (split over replicas when distributed). ``augment`` is a
    policy string or YAML path (``None``: the task's default, ``"none"``: off).
    ``resume`` names a run directory to continue; the run's config is used (``epochs``
    may be raised).
    """

    arch: str | None = None
    data: str = "shapes"
    epochs: int | None = None
    batch_size: int | None = None
    img_size: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    loss: str = "ce"
    class_weights: str | None = None  # "w1,w2,..." or "auto" (kcv.train.class_weights)
    seed: int = 0
    val_split: float = 0.2
    out: str = str(runs.DEFAULT_ROOT)
    name: str | None = None
    model_args: dict = field(default_factory=dict)
    augment: str | None = None
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    patience: int | None = None
    precision: str = "float32"
    jit: bool = False
    steps_per_execution: int = 1
    distribute: str = "auto"
    tensorboard: bool = False
    resume: str | None = None
    backbone: str | None = None  # k-NN only: a trained classifier run whose features it uses
    # transfer learning (kcv.train.transfer)
    pretrained: str | None = None  # "imagenet", a run, .keras, .weights.h5 or keras.applications .h5 file
    freeze_backbone: bool = False
    backbone_lr_mult: float | None = None
    # knowledge distillation (kcv.train.distill)
    teacher: str | None = None  # a trained run
    temperature: float = 4.0
    alpha: float = 0.5
    unlabeled: str | None = None  # images that get only the distillation term
    # self-training (kcv.train.self_training): the pseudo-labels file of the round
    pseudo_labels: str | None = None
    verbose: int = 1

    def resolved(self) -> "TrainConfig":
        """A copy with defaults filled in from the registry entry, and values checked."""
        from kcv.augment import default_policy, parse_policy

        if not self.arch:
            raise KcvError("--arch is required (or --resume RUN to continue a run)")
        spec = get_spec(self.arch)
        d = {**GLOBAL_DEFAULTS, **{k: v for k, v in spec.train_defaults.items() if k != "model_args"}}
        cfg = dataclasses.replace(self)
        for key in GLOBAL_DEFAULTS:
            if getattr(cfg, key) is None:
                setattr(cfg, key, d[key])
        cfg.model_args = {**spec.train_defaults.get("model_args", {}), **self.model_args}
        if cfg.pretrained:  # ImageNet weights fix some hyperparameters (kcv.models.imagenet)
            from kcv.models.imagenet import pretrained_model_args

            cfg.model_args = pretrained_model_args(spec, cfg.pretrained, self.model_args, cfg.model_args)
        cfg.augment = str(parse_policy(default_policy(spec.task) if cfg.augment is None else cfg.augment,
                                       spec.task))
        if cfg.weight_decay is None:
            cfg.weight_decay = 1e-4 if cfg.optimizer == "adamw" else 0.0
        _check(cfg, spec)
        return cfg

    def record(self) -> dict:
        """The fields written to ``config.json``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_RECORDED}


def _check(cfg: TrainConfig, spec) -> None:
    for flag, value in (("--epochs", cfg.epochs), ("--batch-size", cfg.batch_size),
                        ("--steps-per-execution", cfg.steps_per_execution)):
        if int(value) < 1:
            raise KcvError(f"{flag} {value}: must be at least 1")
    if cfg.img_size < spec.min_size:
        raise KcvError(f"--img-size {cfg.img_size}: {spec.name} needs at least {spec.min_size} px")
    if not cfg.lr > 0:
        raise KcvError(f"--lr {cfg.lr}: must be positive")
    if cfg.loss not in losses.LOSSES:
        raise KcvError(f"--loss '{cfg.loss}': choose one of {', '.join(losses.LOSSES)}")
    parse_class_weights(cfg.class_weights)  # format errors before any data is loaded
    for flag, value, choices in (("--optimizer", cfg.optimizer, OPTIMIZERS),
                                 ("--schedule", cfg.schedule, SCHEDULES),
                                 ("--precision", cfg.precision, PRECISIONS),
                                 ("--distribute", cfg.distribute, distribute.MODES)):
        if value not in choices:
            raise KcvError(f"{flag} '{value}': choose one of {', '.join(choices)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise KcvError(f"--label-smoothing {cfg.label_smoothing}: must be in [0, 1)")
    if cfg.label_smoothing and spec.task != "classification":
        raise KcvError("--label-smoothing: classification only")
    if cfg.weight_decay < 0 or not 0 <= cfg.momentum < 1:
        raise KcvError("--weight-decay must be >= 0 and --momentum in [0, 1)")
    if not 0 <= cfg.warmup_epochs < cfg.epochs:
        raise KcvError(f"--warmup-epochs {cfg.warmup_epochs}: must be in [0, --epochs)")
    if cfg.patience is not None and cfg.patience < 1:
        raise KcvError(f"--patience {cfg.patience}: must be at least 1")
    if cfg.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise KcvError("--tensorboard: the tensorboard package is not installed "
                           "(pip install tensorboard, or pip install 'kcv[tensorboard]')")
    for p in PLUGINS:  # flag errors of the plugins' options, before any data is loaded
        p.check(cfg, spec)


class TrainPlugin:
    """Extension point for training variants (distillation, transfer, self-training).

    Subclass, override what you need, and :func:`register_plugin` an instance. Every hook
    is called only when :meth:`applies` is true for the run's config.
    """

    def applies(self, cfg: TrainConfig) -> bool:
        return False

    def check(self, cfg: TrainConfig, spec) -> None:
        """Raise :class:`KcvError` for bad options (called for every plugin, applying or not,
        when the config is resolved, so that e.g. a flag given without its companion is
        reported before any data is loaded)."""

    def prepare_data(self, source, cfg: TrainConfig):
        """Return the :class:`~kcv.data.pipeline.DataSource` to train on (e.g. with
        unlabeled or pseudo-labelled images added to the training split)."""
        return source

    def prepare_model(self, model: keras.Model, cfg: TrainConfig, source) -> keras.Model:
        """Return the model to compile and fit (inside the strategy scope)."""
        return model

    def compile_args(self, args: dict, cfg: TrainConfig, source) -> dict:
        """Return the ``model.compile`` keyword arguments (optimizer, loss, metrics, ...)."""
        return args

    def callbacks(self, cfg: TrainConfig, run_dir: Path) -> list:
        return []

    def deployable(self, model: keras.Model) -> keras.Model:
        """The model saved as ``model.keras`` (e.g. a distiller's student)."""
        return model

    def record(self, cfg: TrainConfig) -> dict:
        """Extra ``config.json`` entries."""
        return {}


PLUGINS: list[TrainPlugin] = []


def register_plugin(plugin: TrainPlugin) -> TrainPlugin:
    PLUGINS.append(plugin)
    return plugin


def make_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """``--lr`` constant, or cosine decay to 0 over the run after a linear warm-up."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "constant" and not warmup:
        return cfg.lr
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "constant":  # warm-up, then flat: cosine with alpha=1 never decays
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(total - warmup, 1), alpha=1.0, warmup_target=cfg.lr, warmup_steps=warmup)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(total - warmup, 1), warmup_target=cfg.lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(cfg.lr, total)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int = 1):
    """Adam, SGD (``--momentum``, Nesterov by default) or AdamW; ``--weight-decay`` is
    decoupled (Loshchilov & Hutter 2019) and skips biases and normalisation parameters."""
    lr = make_schedule(cfg, steps_per_epoch)
    wd = cfg.weight_decay or None
    if cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=wd)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    if wd:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


@contextlib.contextmanager
def precision_policy(name: str):
    """Set Keras' global dtype policy for the block (layers built inside use it)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def train(config: TrainConfig) -> Path | None:
    """Train ``config.arch`` (or resume ``config.resume``) and write its run directory.

    Returns:
        The run directory; ``None`` on a non-chief worker of a multi-worker run.

    Raises:
        KcvError: a bad flag, bad data, a diverged run (NaN loss), or a Keras version
            kcv was not checked on (fit leans on Keras internals; fail before any file).
    """
    from kcv.data.pipeline import load_data

    compat.check()

    if not config.resume and (config.backbone is not None or get_spec(config.arch).family == "knn"):
        from kcv.train.knn import fit_knn  # no gradients: one pass stores the reference set

        return fit_knn(config)
    cfg, run_dir, state = _start(config)
    strategy = distribute.select(cfg.distribute)
    chief = distribute.is_chief(strategy)
    with precision_policy(cfg.precision), tempfile.TemporaryDirectory(prefix="kcv-worker-") as scratch:
        keras.utils.set_random_seed(cfg.seed)
        spec = get_spec(cfg.arch)
        source = load_data(cfg.data, spec.task, cfg.img_size, seed=cfg.seed, val_split=cfg.val_split)
        job = _Job(cfg, spec, source, strategy)
        source = job.source  # what the plugins made of it
        model = job.compiled_model()
        if chief:
            run_dir = run_dir or runs.new_run_dir(cfg.out, cfg.name or cfg.arch)
            if state is None or runs.load_config(run_dir).get("epochs") != cfg.epochs:
                job.write_config(run_dir, model)
        start = int(state["epoch"]) if state else 0
        if state:
            _restore(model, strategy, run_dir / LAST_FILE, state)
        writer = RunWriter(run_dir if chief else scratch, source.num_train, metrics.monitor(spec.task),
                           state, cfg.patience, job.deployable, rng={"seed": cfg.seed})
        train_ds, val_ds = job.datasets(model, start)
        if cfg.verbose:
            _announce(cfg, job.deployable(model), source, strategy, run_dir, start)
        t0 = time.perf_counter()
        if start < cfg.epochs:
            with fused_batch_norm():
                model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=start,
                          steps_per_epoch=job.steps, callbacks=job.callbacks(writer, run_dir, chief),
                          shuffle=False, verbose=_fit_verbosity(cfg.verbose))
        if not chief:
            return None
        final = finalize(run_dir, source, cfg.batch_size, writer.rows, spec.task, cfg.arch)
        final.update(train_seconds=round(time.perf_counter() - t0, 1), stopped_early=writer.stopped_early)
        if start:
            final["resumed_at_epoch"] = start
        runs.write_json(run_dir / METRICS_FILE, final)
        if cfg.verbose and writer.stopped_early:
            print(f"early stop: {writer.monitor} did not improve for {cfg.patience} epochs "
                  f"(best {writer.best:.4f} at epoch {writer.best_epoch})", flush=True)
    return run_dir


class _Job:
    """What one training run derives from its config: model, data streams, callbacks."""

    def __init__(self, cfg: TrainConfig, spec, source, strategy):
        from kcv.augment import parse_policy

        self.plugins = [p for p in PLUGINS if p.applies(cfg)]
        for p in self.plugins:
            source = p.prepare_data(source, cfg)
        self.cfg, self.spec, self.source, self.strategy = cfg, spec, source, strategy
        self.policy = parse_policy(cfg.augment, spec.task)
        # CutMix/MixUp, label smoothing and soft pseudo-labels need one-hot targets and a
        # categorical loss.
        self.soft = spec.task == "classification" and (self.policy.mixing or cfg.label_smoothing > 0
                                                        or source.soft_targets)
        self.drop = strategy.num_replicas_in_sync > 1  # equal per-replica batches
        self.steps = source.steps_per_epoch(cfg.batch_size, self.drop)
        self.class_weights = resolve_class_weights(cfg.class_weights, source)

    def compiled_model(self) -> keras.Model:
        cfg, spec, source = self.cfg, self.spec, self.source
        with self.strategy.scope():
            model = create_model(cfg.arch, source.num_classes, (cfg.img_size,) * 2 + (3,), **cfg.model_args)
            if cfg.precision != "float32":
                model = float32_outputs(model)
            for p in self.plugins:
                model = p.prepare_model(model, cfg, source)
            args = {"optimizer": make_optimizer(cfg, self.steps),
                    "loss": losses.get_loss(cfg.loss, spec.task, self.class_weights,
                                            label_smoothing=cfg.label_smoothing, soft_labels=self.soft),
                    "metrics": metrics.training_metrics(spec.task, source.num_classes, soft_labels=self.soft),
                    # XLA measured slower for these CPU convnets (benchmarks/RESULTS.md)
                    "jit_compile": bool(cfg.jit),
                    "steps_per_execution": min(cfg.steps_per_execution, self.steps)}
            for p in self.plugins:
                args = p.compile_args(args, cfg, source)
            model.compile(**args)  # mixed_float16: Keras wraps the optimizer in LossScaleOptimizer
        return model

    def datasets(self, model, start: int):
        """``(train stream from epoch start, validation batches)``, sharded if multi-worker."""
        from kcv.augment import Augmenter

        cfg, source = self.cfg, self.source
        augment = Augmenter(self.policy, self.spec.task, source.num_classes) if self.policy else None
        train_ds = source.train_stream(cfg.batch_size, cfg.seed, cfg.epochs, start, augment,
                                       one_hot=self.soft, drop_remainder=self.drop)
        val_ds = source.dataset("val", cfg.batch_size, one_hot=self.soft)
        if distribute.is_multiworker(self.strategy):
            train_ds, val_ds = distribute.shard_by_data(train_ds), distribute.shard_by_data(val_ds)
            distribute.prepare_model(model, self.strategy, train_ds.element_spec)
        return train_ds, val_ds

    def callbacks(self, writer, run_dir, chief: bool) -> list:
        callbacks = [NanGuard(_nan_hint(self.cfg, run_dir)), writer]
        if self.cfg.tensorboard and chief:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
        for p in self.plugins:
            callbacks += p.callbacks(self.cfg, run_dir)
        return callbacks

    def deployable(self, model):
        for p in self.plugins:
            model = p.deployable(model)
        return model

    def write_config(self, run_dir, model) -> None:
        cfg, source = self.cfg, self.source
        record = {**cfg.record(), "task": self.spec.task, "num_classes": source.num_classes,
                  "class_names": source.class_names, "num_train": source.num_train,
                  "num_val": source.num_val, "params": int(model.count_params()),
                  "replicas": int(self.strategy.num_replicas_in_sync), "versions": versions()}
        if self.class_weights is not None:
            record["class_weight_values"] = self.class_weights  # what --class-weights resolved to
        for p in self.plugins:
            record.update(p.record(cfg))
        runs.write_json(run_dir / CONFIG_FILE, record)


def _start(config: TrainConfig):
    """``(resolved config, run dir or None, resume state or None)``."""
    if not config.resume:
        return config.resolved(), None, None
    run_dir = runs.resolve_run(config.resume, config.out)
    state = read_state(run_dir / LAST_FILE)
    if state is None:
        raise KcvError(f"{run_dir}: no {LAST_FILE} with resume state (trained before resume support?)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in runs.load_config(run_dir).items() if k in fields and k not in NOT_RECORDED}
    cfg = TrainConfig(**saved, verbose=config.verbose)
    if config.epochs is not None:
        cfg.epochs = config.epochs
    cfg = cfg.resolved()
    done = int(state["epoch"])
    if done >= cfg.epochs and (run_dir / METRICS_FILE).is_file():
        raise KcvError(f"--resume {run_dir}: finished {done} of {cfg.epochs} epochs already; "
                       f"pass --epochs N (N > {done}) to train longer")
    for stale in run_dir.glob(".*.tmp*"):  # a write the killed process never renamed
        if stale.is_file():
            stale.unlink()
    return cfg, run_dir, state


def _restore(model, strategy, last: Path, state: dict) -> None:
    """Weights, optimizer slots and step counter from ``last.keras``; Keras' global RNG."""
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(last)
        except Exception as e:  # a truncated or foreign file: name it
            raise KcvError(f"{last}: cannot restore ({type(e).__name__}: {e})") from None
    rng = state.get("rng", {}).get("keras_global")
    if rng is not None:
        compat.set_global_rng_state(rng)


def _nan_hint(cfg: TrainConfig, run_dir) -> str:
    hint = f"lower --lr (was {cfg.lr:g})"
    if cfg.precision == "mixed_float16":
        hint += " or use --precision float32/mixed_bfloat16"
    where = f"; {run_dir} keeps the last good epoch" if run_dir else ""
    return hint + where


def _announce(cfg, model, source, strategy, run_dir, start) -> None:
    extra = []
    if cfg.precision != "float32":
        extra.append(cfg.precision)
    if cfg.jit:
        extra.append("XLA")
    if strategy.num_replicas_in_sync > 1:
        extra.append(f"{strategy.num_replicas_in_sync} replicas ({distribute.worker_label(strategy)})")
    what = f"resuming {run_dir} at epoch {start + 1}" if start else f"-> {run_dir or 'worker scratch'}"
    print(f"training {cfg.arch} ({model.count_params():,} params) on {source.spec}: "
          f"{source.num_train} train / {source.num_val} val images at {cfg.img_size} px, "
          f"augment {cfg.augment}{', ' + ', '.join(extra) if extra else ''} {what}", flush=True)


def _fit_verbosity(verbose: int) -> int:
    """A live progress bar on a terminal; one line per epoch in logs and pipes."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2
