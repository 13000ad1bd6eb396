"""The options of training, declared once per concern.

Each :class:`Option` is the single declaration of a training option: its name (the
:class:`~kcv.train.TrainConfig` field and Python keyword), type, default, help text,
metavar, allowed values and range, and the model capability it needs. From it come the
``kcv train`` / ``kcv self-train`` click options (:func:`click_options`), the config
dataclasses (:func:`config_class`: ``TrainConfig``, ``SelfTrainConfig``), the value checks
(:func:`check_values`) and the refusal of options a model cannot honour
(:func:`refuse_unsupported`). Groups, one per concern: :data:`CORE` (the training loop),
:data:`TRANSFER`, :data:`DISTILL`, :data:`PSEUDO_LABELS` (a self-training student round,
Python only), :data:`SELF_TRAIN` (``kcv self-train``'s rounds) and :data:`VERBOSITY`.

Adding a training option is one :class:`Option` in the right group below; the loop (or the
technique's :class:`~kcv.train.loop.TrainPlugin`) reads ``cfg.<name>``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from kcv import contracts, runs
from kcv.capabilities import FITS
from kcv.errors import KcvError

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_NOISE = "auto"  # kcv.train.self_training.default_noise
# --alpha's defaults, from benchmarks/learn_study.py and benchmarks/distill_unlabeled.py (five
# regimes, two seeds, three teacher pairs; benchmarks/RESULTS.md). On the labelled images alone no
# (T, alpha) helped beyond seed noise and 0.9 harmed least (worst regime -0.5 points, 0.5: -3.3;
# a held-out set lost most at 0.1). With --unlabeled the distillation term is all the unlabeled
# images get: 0.1 had the highest mean gain over the three pairs (+5.4 points vs 5.0 at 0.5) and
# beat scratch of the same steps in most regimes (3/5; with the strong teacher 4/5, 0.5: 3/5); its
# worst case is a teacher barely better than its student (-4.3 points), which the report flags.
DEFAULT_ALPHA = 0.9
DEFAULT_ALPHA_UNLABELED = 0.1


def _model_args(pairs) -> dict:
    from kcv.cli.options import parse_model_args

    return parse_model_args(pairs)


def _student_model_args(pairs) -> dict | None:
    return _model_args(pairs) if pairs else None


@dataclass(frozen=True)
class Option:
    """One training option.

    Attributes:
        name: the config field and Python keyword (``batch_size``).
        type: ``str``, ``int``, ``float`` or ``bool`` (a flag, or ``--x/--no-x`` with
            ``secondary``).
        default: the Python default; ``None`` = decided later (the architecture's, ...).
        help, metavar: the ``--help`` text; ``metavar`` defaults to ``a|b|c`` of ``choices``.
        choices: allowed values, checked in one ``error:`` line by :func:`check_values`
            (a ``click.Choice`` would answer with a multi-line usage error).
        within: allowed interval, ``"[0, 1)"``, ``"(0, inf)"``, ``"[1, inf)"``.
        fallback: the value when neither the flag nor the architecture's ``train_defaults``
            give one (``img_size``, ``epochs``, ``batch_size``, ``lr``).
        needs: the :class:`~kcv.capabilities.Capabilities` property the architecture must
            have (``"gradients"``, ``"references"``); a value other than the default is
            refused otherwise (:func:`refuse_unsupported`).
        flag: the command-line name when it is not ``--<name>`` (``--model-arg``).
        secondary: the ``--no-x`` of a ``--x/--no-x`` boolean.
        flag_value: with ``flag``: the option is a flag whose presence stores this value.
        multiple: repeatable on the command line (collected, then ``parse``-d).
        parse: command-line value → config value (``KEY=VALUE`` pairs → dict).
        factory: default factory of a mutable default (``dict``).
        cli: ``False``: Python API only (set by another command, e.g. ``pseudo_labels``).
        record: written to ``config.json``.
        with_resume: may be given together with ``kcv train --resume``.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    metavar: str | None = None
    choices: tuple = ()
    within: str | None = None
    fallback: Any = None
    needs: str | None = None
    flag: str | None = None
    secondary: str | None = None
    flag_value: Any = None
    multiple: bool = False
    parse: Callable | None = None
    factory: Callable | None = None
    cli: bool = True
    record: bool = True
    with_resume: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def given_flag(self, value) -> str:
        """The flag that sets ``value`` (``--no-nesterov`` for ``nesterov=False``)."""
        return self.secondary if self.secondary and value is False else self.cli_flag

    def default_value(self):
        return self.factory() if self.factory else self.default

    def click_kwargs(self) -> dict:
        """The ``click.option`` keyword arguments."""
        kw: dict = {"help": self.help}
        if self.flag_value is not None or (self.type is bool and not self.secondary):
            kw["is_flag"] = True
        elif self.multiple:
            kw["multiple"] = True
        else:
            kw["default"] = self.default
            if self.type in (int, float):
                kw["type"] = self.type
            kw["show_default"] = self.default is not None
        metavar = self.metavar or ("|".join(self.choices) if self.choices else None)
        if metavar:
            kw["metavar"] = metavar
        return kw

    def from_cli(self, value):
        """The config value of a parsed command-line ``value``."""
        if self.flag_value is not None:
            return self.flag_value if value else self.default
        return self.parse(value) if self.parse else value


# ------------------------------------------------------------------------------------------
# The groups. Order is the order of `--help`; every field of TrainConfig is declared here.

GRAD = "gradients"  # needs=GRAD: only a model trained by gradient descent can honour the option

CORE = (
    Option("arch", help="Architecture name (see `kcv models`); required unless --resume."),
    Option("data", default="shapes",
           help="'shapes', 'shapes:N' (N training images), a data folder, or a named layout: voc:PATH, "
                "cityscapes:PATH, coco:PATH, csv:FILE (see docs/datasets.md)."),
    Option("epochs", int, fallback=10, within="[1, inf)", needs=GRAD, with_resume=True,
           help="Epochs [default: the architecture's]; with --resume, the new total."),
    Option("batch_size", int, fallback=32, within="[1, inf)",
           help="Global batch size (split over replicas) [default: the architecture's]."),
    Option("img_size", int, fallback=64, help="Square input side in pixels [default: the architecture's]."),
    Option("lr", float, fallback=1e-3, within="(0, inf)", needs=GRAD,
           help="Peak learning rate [default: the architecture's]."),
    Option("optimizer", default="adam", choices=OPTIMIZERS, needs=GRAD,
           help="Optimizer; sgd uses --momentum and Nesterov."),
    Option("schedule", default="constant", choices=SCHEDULES, needs=GRAD,
           help="Learning-rate schedule: constant, or cosine decay to 0 over the run."),
    Option("warmup_epochs", float, 0.0, needs=GRAD,
           help="Linear learning-rate warm-up from 0 over this many epochs (fractions allowed)."),
    Option("momentum", float, 0.9, within="[0, 1)", needs=GRAD, help="SGD momentum."),
    Option("nesterov", bool, True, secondary="--no-nesterov", needs=GRAD, help="Nesterov momentum for sgd."),
    Option("weight_decay", float, within="[0, inf)", needs=GRAD,
           help="Decoupled weight decay, biases and BN excluded [default: 1e-4 for adamw, else 0]."),
    Option("label_smoothing", float, 0.0, within="[0, 1)", needs=GRAD,
           help="Label smoothing for classification (targets become one-hot)."),
    Option("augment", metavar="POLICY", needs=GRAD,
           help="Augmentation policy, e.g. 'flip,rotate=15,crop=0.8,cutmix', 'none', or a YAML file "
                "[default: flip for segmentation, flip,crop=0.8 for classification]. "
                "See docs/training.md 'Augmentation'."),
    Option("patience", int, within="[1, inf)", needs=GRAD,
           help="Stop early after N epochs without a better validation metric."),
    Option("loss", default="ce", choices=contracts.LOSSES, needs=GRAD,
           help="Loss: cross-entropy, one-vs-rest sigmoid cross-entropy (bce), soft Dice, focal "
                "(gamma 2) or CE + Dice; segmentation losses ignore mask label 255. Dice is for "
                "segmentation only."),
    Option("class_weights", metavar="W1,W2,...|auto", needs=GRAD,
           help="Per-class loss weights, one per class in class order, or 'auto' = inverse "
                "frequency in the training targets, w_c = N / (C * n_c)."),
    Option("seed", int, 0, help="Seed for weights, shuffling, augmentation and splits."),
    Option("val_split", float, 0.2, help="Validation fraction for DATA/<class>/ folders without train/ and val/."),
    # the input pipeline (kcv.data.pipeline, docs/datasets.md)
    Option("cache", default="auto", choices=contracts.CACHE_MODES,
           help="Where decoded images are kept between epochs: none = read from disk every epoch (memory "
                "does not grow with the data set), memory, disk = RUN/cache/, auto = memory if the decoded "
                "set fits 1 GiB, else none."),
    Option("crop", int, metavar="N", within="[1, inf)",
           help="Segmentation: train on random NxN crops of the images at their own size (after --scale "
                "and a random flip); validation and eval score whole images."),
    Option("scale", metavar="LO,HI",
           help="With --crop: random scale factor range applied before cropping [default: 0.5,2.0]."),
    Option("precision", default="float32", choices=PRECISIONS, needs=GRAD,
           help="Compute precision; mixed_float16 uses dynamic loss scaling; weights stay float32."),
    Option("jit", bool, False, needs=GRAD, help="Compile the train step with XLA."),
    Option("steps_per_execution", int, 1, within="[1, inf)", needs=GRAD,
           help="Train steps per tf.function call (less Python overhead for small models)."),
    Option("distribute", default="auto", choices=contracts.DISTRIBUTE_MODES, needs=GRAD,
           help="tf.distribute strategy: mirrored = all local GPUs; multiworker = TF_CONFIG cluster, "
                "same command on every node, the chief writes the run."),
    Option("tensorboard", bool, False, needs=GRAD, help="Also write TensorBoard logs to RUN/tensorboard/."),
    Option("resume", metavar="RUN", record=False, with_resume=True,
           help="Continue RUN (a run directory or its name) at its next epoch, with its config."),
    Option("out", default=str(runs.DEFAULT_ROOT), with_resume=True, help="Folder that holds run directories."),
    Option("name", help="Run directory name [default: the architecture, suffixed -2, -3...]."),
    Option("model_args", flag="--model-arg", multiple=True, metavar="KEY=VALUE", parse=_model_args, factory=dict,
           help="Hyperparameter for the architecture, repeatable (e.g. base_filters=16)."),
    Option("backbone", metavar="RUN", needs="references",
           help="--arch knn only: compare a trained classifier run's penultimate features "
                "instead of raw pixels."),
)

TRANSFER = (  # kcv.train.transfer
    Option("pretrained", metavar="imagenet|RUN|FILE", needs=GRAD,
           help="Transfer learning: 'imagenet' = keras.applications' ImageNet weights for ARCH (or "
                "a segmentation model's backbone=), from Keras's cache (`kcv weights`); or a kcv "
                "run, a .keras / .weights.h5 file, or a keras.applications .h5 file under its own "
                "name. Layers are matched by name, never by order; a shape mismatch refuses the "
                "file; the head is freshly initialised (with 1000 classes ImageNet's is loaded)."),
    Option("freeze_backbone", bool, False, needs=GRAD,
           help="With --pretrained: train only the head (feature extraction); the backbone's "
                "BatchNorm stays in inference mode."),
    Option("backbone_lr_mult", float, metavar="F", within="[0, inf)", needs=GRAD,
           help="With --pretrained: fine-tune everything, the backbone at F x the head's "
                "learning rate (e.g. 0.1)."),
)

DISTILL = (  # kcv.train.distill
    Option("teacher", metavar="RUN", needs=GRAD,
           help="Knowledge distillation from a trained run: loss = A*CE + (1-A)*T^2*KL(teacher/T || "
                "student/T); only the student is saved and exported."),
    Option("temperature", float, 4.0, within="(0, inf)", needs=GRAD,
           help="Distillation temperature T (with --teacher)."),
    # None = DEFAULT_ALPHA, or DEFAULT_ALPHA_UNLABELED with --unlabeled (filled in by
    # TrainConfig.resolved and recorded in config.json); why: see DEFAULT_ALPHA.
    Option("alpha", float, None, within="[0, 1]", needs=GRAD,
           help="Weight A of the label loss; 1 - A goes to the distillation term (with --teacher). "
                f"Default {DEFAULT_ALPHA} on the labelled images alone, {DEFAULT_ALPHA_UNLABELED} with "
                "--unlabeled."),
    Option("unlabeled", metavar="DIR|shapes[:N]", needs=GRAD,
           help="With --teacher: also train on these unlabeled images (a flat folder), which get "
                "the distillation term only."),
    Option("baseline", metavar="RUN", needs=GRAD,
           help="With --teacher: a run of the same student trained without --teacher on the same "
                "budget; the report says whether distillation beat it."),
)

PSEUDO_LABELS = (  # kcv.train.self_training: what `kcv self-train` passes a student round
    Option("pseudo_labels", needs=GRAD, cli=False, help="The pseudo-labels file (.npz) of the round."),
)

VERBOSITY = (
    Option("verbose", int, 1, flag="--quiet", flag_value=0, record=False, with_resume=True,
           help="No progress bar."),
)

SELF_TRAIN = (  # kcv self-train (kcv.train.self_training.SelfTrainConfig)
    Option("unlabeled", default="shapes", metavar="DIR|shapes[:N]",
           help="Unlabeled images: a flat folder, or N images of the built-in shapes' own unlabeled split."),
    Option("rounds", int, 1, within="[1, inf)",
           help="Student rounds; each student becomes the next round's teacher."),
    Option("threshold", float, 0.8, within="[0, 1)",
           help="Keep pseudo-labels whose confidence (max probability; per pixel for segmentation) "
                "is at least this, per class lowered where needed to keep --min-keep."),
    Option("min_keep", float, 0.5, within="[0, 1]", metavar="SHARE",
           help="Keep at least this share of each predicted class's images (pixels), the most "
                "confident, whatever --threshold says (class-wise thresholds); 0 = the fixed "
                "threshold. Not applied when the teacher is near chance."),
    Option("round_patience", int, 1, within="[1, inf)", flag="--patience",
           help="Stop after N students in a row that do not beat the best model so far; the "
                "result is always the best of the teacher and the students on validation."),
    Option("soft", bool, False, flag="--soft", secondary="--hard",
           help="Soft targets (the teacher's probabilities; classification) or hard (argmax) pseudo-labels."),
    Option("balance", bool, True, secondary="--no-balance",
           help="Classification: as many pseudo-labels per class (the most confident of a large "
                "class, repeats of a small one), as Noisy Student does."),
    Option("teacher", metavar="RUN", help="Start from this trained run instead of training round 0 on the labels."),
    Option("student_arch", help="Students' architecture, equal or larger [default: --arch]."),
    Option("student_model_args", flag="--student-model-arg", multiple=True, metavar="KEY=VALUE",
           parse=_student_model_args,
           help="Students' hyperparameter, repeatable (e.g. dropout=0.5) [default: the --model-arg values]."),
    Option("student_epochs", int, within="[1, inf)", help="Students' epochs [default: --epochs]."),
    Option("noise", default=DEFAULT_NOISE, metavar="auto|POLICY",
           help="Students' input noise (an --augment policy); auto = RandAugment and crop scaled "
                "with image size and model size (randaugment=2x9, crop=0.8 at 224 px; milder for "
                "small images and models). Dropout and stochastic depth come from the architecture."),
)

TRAIN_GROUPS = (CORE, TRANSFER, DISTILL, PSEUDO_LABELS, VERBOSITY)  # the fields of TrainConfig


def options(*groups) -> dict[str, Option]:
    """``{name: Option}`` of ``groups`` (default: TrainConfig's), in order."""
    return {o.name: o for group in (groups or TRAIN_GROUPS) for o in group}


# ------------------------------------------------------------------------------------------
# What the schema generates


def config_class(name: str, groups, *, base: type = object, first=(), doc: str = "", module: str = __name__):
    """A dataclass with one field per option of ``groups`` (after the ``first`` fields,
    ``(name, type)`` pairs without defaults), its methods inherited from ``base``."""
    fields = list(first)
    for o in options(*groups).values():
        default = dataclasses.field(default_factory=o.factory) if o.factory else dataclasses.field(default=o.default)
        fields.append((o.name, Any, default))
    cls = dataclasses.make_dataclass(name, fields, bases=(base,), namespace={"__doc__": doc})
    cls.__module__ = module
    return cls


def click_options(*groups, exclude=(), overrides: dict | None = None):
    """A decorator adding the click options of ``groups`` (minus ``exclude``) to a command,
    in order; ``overrides`` = ``{name: {click keyword: value}}`` where a command words an
    option for its own meaning (``kcv self-train``: ``--epochs`` is the teacher's)."""
    import click

    chosen = [o for o in options(*groups).values() if o.cli and o.name not in exclude]

    def deco(fn):
        for o in reversed(chosen):
            decl = f"{o.cli_flag}/{o.secondary}" if o.secondary else o.cli_flag
            fn = click.option(decl, o.name, **{**o.click_kwargs(), **(overrides or {}).get(o.name, {})})(fn)
        return fn

    return deco


def config_kwargs(params: dict, *groups) -> dict:
    """Config keyword arguments of ``groups`` from a click command's ``params``."""
    return {o.name: o.from_cli(params[o.name]) for o in options(*groups).values() if o.name in params}


# ------------------------------------------------------------------------------------------
# Checks


def _interval(within: str):
    lo, hi = (float(v) for v in within[1:-1].split(","))
    return lo, hi, within[0] == "[", within[-1] == "]"


def _outside(value, within: str) -> str | None:
    """The complaint about ``value`` outside ``within``, or ``None``."""
    lo, hi, lo_closed, hi_closed = _interval(within)
    ok = (value >= lo if lo_closed else value > lo) and (value <= hi if hi_closed else value < hi)
    if ok:
        return None
    if not math.isinf(hi):
        return f"must be in {within}"
    if not lo_closed:
        return "must be positive" if lo == 0 else f"must be > {lo:g}"
    return f"must be at least {lo:g}" if float(lo).is_integer() and lo > 0 else f"must be >= {lo:g}"


def check_values(cfg, *groups) -> None:
    """Choices and ranges of the options of ``groups`` (set values only), one line each.

    Raises:
        KcvError: ``--optimizer 'lamb': choose one of adam, sgd, adamw``, ``--epochs 0: must
            be at least 1``, ...
    """
    for o in options(*groups).values():
        value = getattr(cfg, o.name)
        if value is None:
            continue
        if o.choices and value not in o.choices:
            raise KcvError(f"{o.cli_flag} '{value}': choose one of {', '.join(o.choices)}")
        problem = o.within and _outside(value, o.within)
        if problem:
            raise KcvError(f"{o.cli_flag} {value}: {problem}")


def refuse_unsupported(cfg, spec, *groups) -> None:
    """Refuse, in one line, an option given (a value other than its default) that the
    architecture ``spec`` cannot honour (its ``needs`` capability is missing).

    Raises:
        KcvError: e.g. ``--augment: knn is fitted in one pass from a reference set, not trained
            by gradient descent; leave --augment out``.
    """
    caps = spec.capabilities
    for o in options(*groups).values():
        value = getattr(cfg, o.name)
        if o.needs and not getattr(caps, o.needs) and value != o.default_value():
            flag = o.given_flag(value)
            raise KcvError(f"{flag}: {spec.name} is {caps.describe()}, not {FITS[o.needs]}; "
                           f"{_only_for(o, flag, spec)}")


def _only_for(option: Option, flag: str, spec) -> str:
    """``--backbone is for --arch knn only`` where few models can, else ``leave FLAG out``."""
    from kcv.registry import get_spec, list_models

    able = [n for n in list_models(spec.task) if getattr(get_spec(n).capabilities, option.needs)]
    if 0 < len(able) <= 3:
        return f"{flag} is for --arch {' / '.join(able)} only"
    return f"leave {flag} out"
