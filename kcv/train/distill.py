"""Knowledge distillation: ``kcv train --teacher RUN --temperature T --alpha A [--unlabeled DIR]``.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
(arXiv:1503.02531): the student minimises

    A·CE(labels, student) + (1−A)·T²·KL(softmax(teacher/T) ‖ softmax(student/T))

(:func:`kcv.losses.distillation`). Built on ``keras.distillation.Distiller``, which already
freezes the teacher, runs it with ``training=False`` (BatchNorm and dropout in inference
mode), forwards ``call`` to the student and mixes the two terms as
``student_loss_weight·student_loss + (1 − student_loss_weight)·distillation_loss`` — that is
the formula with ``student_loss_weight = A``. What kcv adds, without overriding
``compute_loss``:

- :class:`SoftTargetKL`, a ``keras.distillation.DistillationLoss`` computing
  T²·KL from log-softmaxes (Keras' ``LogitsDistillation`` goes through ``KLDivergence``,
  which clips probabilities to 1e-7, so a confident teacher's exact KL is not what it
  computes). It reduces over the class axis only, so on ``[B, H, W, C]`` segmentation logits
  it is the pixel-wise distillation, averaged over pixels.
- Unlabeled images (``--unlabeled``) join the training split with target 255, the label
  every kcv loss ignores: their CE term is zero and the mean CE runs over labelled samples
  only, while the KL term covers every image, which is exactly "KL term only" for them.
  Keras' sparse cross-entropy would reject label 255, so the student loss becomes
  :class:`kcv.losses.KcvLoss`, and training accuracy counts labelled samples only.
- The teacher and the student see the same augmented batch, as in Hinton et al. and in
  Beyer et al. 2022 ("Knowledge distillation: A good teacher is patient and consistent",
  arXiv:2106.05237), who found that feeding both the same view ("function matching") beats
  a teacher on clean images. (Self-training's pseudo-labels, where the teacher must label
  clean images, are in :mod:`kcv.train.self_training`.)
- Only the student is saved (``model.keras``) and exported; ``last.keras`` holds the whole
  distiller so that ``--resume`` works.
- Honest reporting: ``metrics.json`` gets a ``distillation`` entry with the teacher's score
  on the student's validation split beside the student's, and (``--baseline RUN``, a run
  trained without ``--teacher`` on the same budget) the baseline's; ``warnings`` say when the
  student ends below the baseline or the teacher is no better than its student — on a
  held-out set both happened with settings that helped on ``shapes``.
"""

from __future__ import annotations

from pathlib import Path

import keras

from kcv import losses, runs
from kcv.errors import KcvError
from kcv.train.loop import TrainConfig, TrainPlugin, register_plugin
from kcv.contracts import IGNORE_LABEL, METRICS_FILE, main_head_model



@keras.saving.register_keras_serializable(package="kcv")
class SoftTargetKL(keras.distillation.DistillationLoss):
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), mean over samples or pixels
    (:func:`kcv.losses.kl_distillation`)."""

    def __init__(self, temperature: float = 4.0):
        if not temperature > 0:
            raise KcvError(f"--temperature {temperature}: must be positive")
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return losses.kl_distillation(teacher_outputs, student_outputs, self.temperature)

    def get_config(self):
        return {"temperature": self.temperature}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def make_distiller(teacher: keras.Model, student: keras.Model, temperature: float, alpha: float):
    """A ``keras.distillation.Distiller`` whose loss is :func:`kcv.losses.distillation`.

    A teacher with auxiliary heads (GoogLeNet) is distilled from its main head.
    """
    teacher = main_head_model(teacher)
    if len(student.outputs) > 1:
        raise KcvError(f"--teacher: the student '{student.name}' has auxiliary heads; "
                       "distil into a single-output architecture")
    distiller = keras.distillation.Distiller(teacher=teacher, student=student,
                                             distillation_losses=SoftTargetKL(temperature),
                                             student_loss_weight=float(alpha), name="distiller")
    distiller.built = True  # its only weights are the two (built) models'
    return distiller


@keras.saving.register_keras_serializable(package="kcv")
class LabelledAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Sparse accuracy over labelled samples only (targets of 255 are skipped)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        labelled = keras.ops.cast(keras.ops.not_equal(keras.ops.cast(y_true, "int32"), IGNORE_LABEL), "float32")
        return super().update_state(y_true, y_pred, sample_weight=labelled)


@keras.saving.register_keras_serializable(package="kcv")
class LabelledTopK(keras.metrics.SparseTopKCategoricalAccuracy):
    """Sparse top-k accuracy over labelled samples only (targets of 255 are skipped)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        labelled = keras.ops.cast(keras.ops.not_equal(keras.ops.cast(y_true, "int32"), IGNORE_LABEL), "float32")
        return super().update_state(y_true, y_pred, sample_weight=labelled)


def load_teacher(path, task: str, class_names, img_size: int) -> keras.Model:
    """The trained model of run ``path``, checked against the student's task and classes.

    Raises:
        KcvError: not a run, another task, other classes or another input size.
    """
    model, config = runs.load_run(path)
    where = f"--teacher {path}"
    if config.get("task") != task:
        raise KcvError(f"{where}: a {config.get('task')} run; the student is {task}")
    if list(config.get("class_names", [])) != list(class_names):
        raise KcvError(f"{where}: trained on classes {config.get('class_names')}; the data has "
                       f"{list(class_names)}")
    side = tuple(model.inputs[0].shape[1:3])
    if None not in side and side != (img_size, img_size):
        raise KcvError(f"{where}: takes {side[0]} px images; pass --img-size {side[0]}")
    return model


def _teacher_dir(cfg: TrainConfig):
    try:
        return runs.resolve_run(cfg.teacher, cfg.out)
    except KcvError as e:
        raise KcvError(f"--teacher {e}") from None


# Optimiser steps within this factor of each other count as the same number of steps.
SAME_STEPS = 1.2


def optimiser_steps(config: dict) -> int | None:
    """Optimiser steps of a run: ``epochs`` x batches of ``num_train`` (which counts a distilled
    run's ``--unlabeled`` images); ``None`` if ``config.json`` does not record them."""
    try:
        return int(config["epochs"]) * -(-int(config["num_train"]) // int(config["batch_size"]))
    except (KeyError, TypeError, ValueError):
        return None


# What makes two runs "the same budget": a baseline that differs in one of these is not the
# student trained without a teacher, and the report says so instead of comparing silently.
BUDGET_FIELDS = ("arch", "model_args", "data", "img_size", "epochs", "batch_size", "lr", "optimizer",
                 "schedule", "augment", "val_split", "pretrained")


def budget_differences(baseline: dict, student: dict) -> list[str]:
    """The fields of :data:`BUDGET_FIELDS` where the baseline's config differs from the
    student's, as ``"epochs 4 (baseline) vs 12"``; fields a config does not record are skipped.
    Other epochs are the same budget when they make the same optimiser steps (within 20 %):
    the baseline that matches a student's ``--unlabeled`` steps is the like-for-like one."""
    mine, theirs = optimiser_steps(student), optimiser_steps(baseline)
    same_steps = bool(mine and theirs) and max(mine, theirs) <= SAME_STEPS * min(mine, theirs)
    return [f"{k} {baseline[k]!r} (baseline) vs {student[k]!r}" for k in BUDGET_FIELDS
            if k in baseline and k in student and baseline[k] != student[k] and not (k == "epochs" and same_steps)]


def _baseline(cfg: TrainConfig, task: str) -> tuple[Path, float]:
    """``(run dir, validation score)`` of ``--baseline RUN``."""
    from kcv.metrics import monitor

    try:
        run = runs.resolve_run(cfg.baseline, cfg.out)
    except KcvError as e:
        raise KcvError(f"--baseline {e}") from None
    config, key = runs.load_config(run), monitor(task)
    value = runs.read_json(run / METRICS_FILE).get(key) if (run / METRICS_FILE).is_file() else None
    if config.get("task") != task or value is None:
        raise KcvError(f"--baseline {cfg.baseline}: not a finished {task} run with {key} in {METRICS_FILE}")
    if config.get("distillation"):
        raise KcvError(f"--baseline {cfg.baseline}: trained with --teacher; the baseline is the same "
                       "student trained without one")
    return run, float(value)


def distillation_report(student: float, teacher: float, key: str, baseline: float | None = None,
                        baseline_run=None, differences: list[str] | None = None, unlabeled: bool = False,
                        steps: tuple[int | None, int | None] = (None, None), epochs: int | None = None) -> dict:
    """The ``distillation`` entry of ``metrics.json``: scores side by side, and warnings
    when distilling did not help or the baseline is not the same budget (``differences``,
    from :func:`budget_differences`). ``unlabeled``: the student had ``--unlabeled`` images;
    without them a "did not help" warning says what helped in kcv's study. ``steps``: the
    student's and the baseline's :func:`optimiser_steps`; when ``--unlabeled`` made the
    student's many more, a warning says so and which ``--epochs`` (scaling the baseline's
    ``epochs``) would match them — in kcv's study most of the gain of ``--unlabeled`` over a
    baseline of the same epochs was the extra steps (benchmarks/RESULTS.md)."""
    out = {"metric": key, "student": student, "teacher": teacher, "warnings": []}
    if teacher <= student:
        out["warnings"].append(f"the teacher ({teacher:.4f}) is no better than its student "
                               f"({student:.4f}) on {key}: distilling from it cannot be expected to help")
    if baseline is not None:
        out.update(baseline=baseline, baseline_run=str(baseline_run), gain=student - baseline)
        if student < baseline:
            hint = "" if unlabeled else (
                "; on the labelled images alone it rarely does (benchmarks/RESULTS.md, issue 18's study): "
                "--unlabeled DIR, images the teacher labels for the student, is what helped there")
            out["warnings"].append(f"the student ({student:.4f}) ends below training without --teacher "
                                   f"({baseline:.4f}, {baseline_run}): distillation did not help here" + hint)
        if differences:
            out["warnings"].append(f"--baseline {baseline_run} is not the same budget ("
                                   + "; ".join(differences) + "): the comparison is not like for like")
        mine, theirs = steps
        if mine and theirs:
            out["steps"] = {"student": mine, "baseline": theirs}
            if unlabeled and epochs and mine > SAME_STEPS * theirs:
                out["warnings"].append(
                    f"the student took {mine / theirs:.1f}x the baseline's optimiser steps ({mine} vs {theirs}; "
                    "--unlabeled lengthens its epochs): part of any gain is the extra steps; a baseline trained "
                    f"with --epochs {max(1, round(epochs * mine / theirs))} is the like-for-like check")
    return out


class DistillPlugin(TrainPlugin):
    """``kcv train --teacher RUN --temperature T --alpha A [--unlabeled DIR]``."""

    def __init__(self):
        self.unlabeled_count = 0
        self.params: dict = {}

    def applies(self, cfg: TrainConfig) -> bool:
        return bool(cfg.teacher)

    def check(self, cfg: TrainConfig, spec) -> None:
        from kcv.augment import parse_policy

        if cfg.unlabeled and not cfg.teacher:
            raise KcvError("--unlabeled needs --teacher RUN (or use `kcv self-train` for pseudo-labels)")
        if cfg.baseline and not cfg.teacher:
            raise KcvError("--baseline needs --teacher RUN (it is what the distilled student is compared with)")
        if not cfg.teacher:
            return
        if cfg.baseline:
            _baseline(cfg, spec.task)
        _teacher_dir(cfg)  # a clear error before the data is loaded
        if cfg.unlabeled:
            if cfg.alpha >= 1.0:
                raise KcvError("--unlabeled with --alpha 1: unlabeled images would get no loss at all")
            if parse_policy(cfg.augment, spec.task).mixing or cfg.label_smoothing:
                raise KcvError("--unlabeled: cannot be combined with cutmix/mixup or "
                               "--label-smoothing (mixed targets of unlabeled images)")

    def prepare_data(self, source, cfg: TrainConfig):
        if not cfg.unlabeled:
            return source
        from kcv.data.unlabeled import load_unlabeled, with_unlabeled

        unlabeled = load_unlabeled(cfg.unlabeled, source.task, source.img_size)
        self.unlabeled_count = len(unlabeled)
        return with_unlabeled(source, unlabeled)

    def prepare_model(self, model, cfg: TrainConfig, source):
        teacher = load_teacher(_teacher_dir(cfg), source.task, source.class_names, cfg.img_size)
        self.params = {"params": int(model.count_params()), "teacher_params": int(teacher.count_params())}
        return make_distiller(teacher, model, cfg.temperature, cfg.alpha)

    def compile_args(self, args: dict, cfg: TrainConfig, source) -> dict:
        if cfg.unlabeled:
            loss = args["loss"]
            if not isinstance(loss, losses.KcvLoss):  # Keras' sparse CE cannot skip label 255
                args["loss"] = losses.KcvLoss(cfg.loss)
            if source.task == "classification":
                k = min(5, source.num_classes)
                args["metrics"] = [LabelledAccuracy(name="accuracy"), LabelledTopK(k=k, name="top5_accuracy")]
        return args

    def deployable(self, model):
        return model.student if isinstance(model, keras.distillation.Distiller) else model

    def finish(self, cfg: TrainConfig, run_dir, source, final: dict) -> dict:
        from kcv.evaluation.evaluate import evaluate_model
        from kcv.metrics import monitor

        key = monitor(source.task)
        teacher = load_teacher(_teacher_dir(cfg), source.task, source.class_names, cfg.img_size)
        scored, _ = evaluate_model(teacher, source, cfg.batch_size)
        base_run, base = _baseline(cfg, source.task) if cfg.baseline else (None, None)
        differences, steps, base_epochs = None, (None, None), None
        if base_run is not None:
            base_config, config = runs.load_config(base_run), runs.load_config(run_dir)
            differences = budget_differences(base_config, config)
            steps = (optimiser_steps(config), optimiser_steps(base_config))
            base_epochs = base_config.get("epochs")
        return {"distillation": distillation_report(float(final[key]), float(scored[key]), key, base, base_run,
                                                    differences, unlabeled=bool(cfg.unlabeled), steps=steps,
                                                    epochs=base_epochs)}

    def record(self, cfg: TrainConfig) -> dict:
        out = {"teacher": str(cfg.teacher), "temperature": cfg.temperature, "alpha": cfg.alpha,
               "teacher_params": self.params.get("teacher_params")}
        if cfg.unlabeled:
            out.update(unlabeled=str(cfg.unlabeled), unlabeled_images=self.unlabeled_count)
        # "params" is the student's: the distiller being fitted also holds the teacher
        return {"params": self.params.get("params"), "distillation": out}


register_plugin(DistillPlugin)
