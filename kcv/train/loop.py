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
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import keras

from kcv import compat, losses, metrics, runs
from kcv.errors import KcvError
from kcv.registry import create_model, get_spec
from kcv import options
from kcv.train import distribute
from kcv.models.feasibility import check_feasible
from kcv.train.callbacks import (LAST_FILE, DamagedCheckpoint, NanGuard, RunWriter, finalize, float32_outputs,
                                 read_state, versions)
from kcv.train.class_weights import parse_class_weights, resolve_class_weights
from kcv.train.fused_bn import fused_batch_norm
from kcv.contracts import CONFIG_FILE, METRICS_FILE

# "The architecture's default" when its train_defaults have none (Option.fallback).
GLOBAL_DEFAULTS = {o.name: o.fallback for o in options.CORE if o.fallback is not None}
NOT_RECORDED = tuple(o.name for o in options.options().values() if not o.record)


class _TrainConfigMethods:
    def resolved(self) -> "TrainConfig":
        """A copy with defaults filled in from the registry entry, and values checked."""
        from kcv.augment import default_policy, parse_policy

        if not self.arch:
            raise KcvError("--arch is required (or --resume RUN to continue a run)")
        spec = get_spec(self.arch)
        options.refuse_unsupported(self, spec)  # before the defaults fill what was not given
        d = {**GLOBAL_DEFAULTS, **{k: v for k, v in spec.train_defaults.items() if k != "model_args"}}
        cfg = dataclasses.replace(self)
        if cfg.crop is not None and cfg.img_size is None:
            cfg.img_size = int(cfg.crop)  # what export and calibration use for a fixed size
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
        if cfg.alpha is None:
            cfg.alpha = options.DEFAULT_ALPHA_UNLABELED if cfg.unlabeled else options.DEFAULT_ALPHA
        _check(cfg, spec)
        return cfg

    def record(self) -> dict:
        """The fields written to ``config.json``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_RECORDED}


TrainConfig = options.config_class("TrainConfig", options.TRAIN_GROUPS, base=_TrainConfigMethods, doc="""\
Every argument of ``kcv train``; ``None`` means "the architecture's default".

One field per :class:`~kcv.options.Option` of :data:`kcv.options.TRAIN_GROUPS`
(names, defaults and meaning are declared there, once). ``batch_size`` is global (split
over replicas when distributed). ``augment`` is a policy string or YAML path (``None``: the
task's default, ``"none"``: off). ``resume`` names a run directory to continue; the run's
config is used (``epochs`` may be raised).
""", module=__name__)


def _check(cfg: TrainConfig, spec) -> None:
    options.check_values(cfg)  # choices and ranges the schema declares
    if cfg.img_size < spec.min_size:
        raise KcvError(f"--img-size {cfg.img_size}: {spec.name} needs at least {spec.min_size} px")
    if not 0 <= cfg.seed < 2**32:  # what NumPy's and TensorFlow's seeding accept
        raise KcvError(f"--seed {cfg.seed}: must be between 0 and {2**32 - 1}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise KcvError(f"--lr {cfg.lr}: must be a positive finite number")
    parse_class_weights(cfg.class_weights)  # format errors before any data is loaded
    _check_input(cfg, spec)
    if cfg.label_smoothing and spec.task != "classification":
        raise KcvError("--label-smoothing: classification only")
    if not 0 <= cfg.warmup_epochs < cfg.epochs:
        raise KcvError(f"--warmup-epochs {cfg.warmup_epochs}: must be in [0, --epochs)")
    if cfg.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise KcvError("--tensorboard: the tensorboard package is not installed "
                           "(pip install tensorboard, or pip install 'kcv[tensorboard]')")
    for plugin in PLUGINS:  # flag errors of the techniques' options, before any data is loaded
        plugin().check(cfg, spec)


def _check_input(cfg: TrainConfig, spec) -> None:
    from kcv.data.crop import parse_crop

    crop = parse_crop(cfg.crop, cfg.scale)  # --cache's choices are the schema's
    if crop is not None and spec.task != "segmentation":
        raise KcvError("--crop: segmentation only (classification resizes to --img-size)")
    if crop is not None and crop.size < spec.min_size:
        raise KcvError(f"--crop {crop.size}: {spec.name} needs at least {spec.min_size} px")


class TrainPlugin:
    """Extension point for training variants (distillation, transfer, self-training).

    Subclass, override what you need, and :func:`register_plugin` the class: every run
    makes its own instance, so state kept on ``self`` (a transfer report, a teacher's size)
    belongs to one run. Every hook is called only when :meth:`applies` is true for the
    run's config; the options a technique reads are declared in :mod:`kcv.options`.
    """

    def applies(self, cfg: TrainConfig) -> bool:
        return False

    def check(self, cfg: TrainConfig, spec) -> None:
        """Raise :class:`KcvError` for bad options (called for every plugin, applying or not,
        when the config is resolved, so that e.g. a flag given without its companion is
        reported before any data is loaded). Choices and ranges are checked by the schema."""

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

    def finish(self, cfg: TrainConfig, run_dir: Path, source, final: dict) -> dict:
        """Extra ``metrics.json`` entries, once the best model is scored (e.g. the teacher's
        score beside the student's)."""
        return {}


PLUGINS: list[Callable[[], TrainPlugin]] = []  # factories (classes): a fresh technique per run


def register_plugin(factory: Callable[[], TrainPlugin]):
    """Register a :class:`TrainPlugin` subclass (or a factory of instances); returns it."""
    if isinstance(factory, TrainPlugin) or not callable(factory):
        raise TypeError("register_plugin takes a TrainPlugin class (each run makes its own instance)")
    PLUGINS.append(factory)
    return factory


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
    from kcv.data.crop import parse_crop
    from kcv.data.pipeline import load_data

    compat.check()

    if not config.resume and config.arch and get_spec(config.arch).capabilities.references:
        from kcv.train.knn import fit_knn  # no gradients: one pass stores the reference set

        with runs.NewRunGuard():
            return fit_knn(config)
    cfg, run_dir, state = _start(config)
    # Sizes, depths and widths that cannot work are refused before any data or weights.
    check_feasible(cfg.arch, 2, cfg.img_size, cfg.batch_size, cfg.model_args)
    strategy = distribute.select(cfg.distribute)
    chief = distribute.is_chief(strategy)
    with runs.NewRunGuard(), precision_policy(cfg.precision), \
            tempfile.TemporaryDirectory(prefix="kcv-worker-") as scratch:
        keras.utils.set_random_seed(cfg.seed)
        spec = get_spec(cfg.arch)
        source = load_data(cfg.data, spec.task, cfg.img_size, seed=cfg.seed, val_split=cfg.val_split,
                           crop=parse_crop(cfg.crop, cfg.scale))
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
        job.cache(Path(run_dir if chief else scratch) / "cache")
        source = job.source
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
        for p in job.plugins:
            final.update(p.finish(cfg, run_dir, source, final))
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

        self.plugins = [p for p in (factory() for factory in PLUGINS) if p.applies(cfg)]
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
            # with --crop the model takes any size: crops in training, whole images in validation
            side = None if source.crop else cfg.img_size
            model = create_model(cfg.arch, source.num_classes, (side, side, 3), **cfg.model_args)
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

    def cache(self, directory: Path) -> None:
        """Hold the decoded images as ``--cache`` says (``disk``: under ``directory``)."""
        self.source = self.source.cached(self.cfg.cache, directory)

    def datasets(self, model, start: int):
        """``(train stream from epoch start, validation batches)``. Multi-worker: each worker
        reads only its slice of every global batch (kcv.train.distribute.per_worker)."""
        from kcv.augment import Augmenter

        cfg, source = self.cfg, self.source
        augment = Augmenter(self.policy, self.spec.task, source.num_classes) if self.policy else None

        def stream(shard=None, local_replicas=1):
            return source.train_stream(cfg.batch_size, cfg.seed, cfg.epochs, start, augment, one_hot=self.soft,
                                       drop_remainder=self.drop, shard=shard, local_replicas=local_replicas)

        val_ds = source.dataset("val", cfg.batch_size, one_hot=self.soft)
        if not distribute.is_multiworker(self.strategy):
            return stream(), val_ds
        train_ds = distribute.per_worker(self.strategy, stream)
        distribute.prepare_model(model, self.strategy, stream(distribute.shard_of(self.strategy)).element_spec)
        return train_ds, distribute.shard_by_data(val_ds)

    def callbacks(self, writer, run_dir, chief: bool) -> list:
        callbacks = [NanGuard(_nan_hint(self.cfg), run_dir), writer]
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
    try:
        run_dir = runs.resolve_run(config.resume, config.out)
    except KcvError as e:  # say which flag named it
        raise KcvError(f"--resume {e}") from None
    try:
        state = read_state(run_dir / LAST_FILE)
    except DamagedCheckpoint as e:
        raise KcvError(f"{run_dir / LAST_FILE}: damaged ({e}); the run cannot be resumed from it") from None
    if state is None:
        raise KcvError(f"{run_dir}: no {LAST_FILE} with resume state (trained before resume support?)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in runs.load_config(run_dir).items() if k in fields and k not in NOT_RECORDED}
    try:
        cfg = TrainConfig(**saved, verbose=config.verbose)
        if config.epochs is not None:
            cfg.epochs = config.epochs
        cfg = cfg.resolved()
    except (TypeError, ValueError) as e:  # a hand-edited config.json with values of the wrong type
        raise KcvError(f"{run_dir / CONFIG_FILE}: damaged run config ({type(e).__name__}: {e})") from None
    done = int(state["epoch"])
    if done >= cfg.epochs and (run_dir / METRICS_FILE).is_file():
        raise KcvError(f"--resume {run_dir}: finished {done} of {cfg.epochs} epochs already; "
                       f"pass --epochs N (N > {done}) to train longer")
    runs.remove_stale_temps(run_dir)  # writes a killed process never renamed
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


def _nan_hint(cfg: TrainConfig) -> str:
    hint = f"lower --lr (was {cfg.lr:g})"
    if cfg.precision == "mixed_float16":
        hint += " or use --precision float32/mixed_bfloat16"
    return hint


def _announce(cfg, model, source, strategy, run_dir, start) -> None:
    extra = []
    if cfg.precision != "float32":
        extra.append(cfg.precision)
    if cfg.jit:
        extra.append("XLA")
    if strategy.num_replicas_in_sync > 1:
        extra.append(f"{strategy.num_replicas_in_sync} replicas ({distribute.worker_label(strategy)})")
    what = f"resuming {run_dir} at epoch {start + 1}" if start else f"-> {run_dir or 'worker scratch'}"
    size = f"{source.crop.size} px crops" if source.crop else f"{cfg.img_size} px"
    print(f"training {cfg.arch} ({model.count_params():,} params) on {source.spec}: "
          f"{source.num_train} train / {source.num_val} val images at {size}, cache {source.cache}, "
          f"augment {cfg.augment}{', ' + ', '.join(extra) if extra else ''} {what}", flush=True)


def _fit_verbosity(verbose: int) -> int:
    """A live progress bar on a terminal; one line per epoch in logs and pipes."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2
