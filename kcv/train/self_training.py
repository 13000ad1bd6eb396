"""Semi-supervised learning: pseudo-labels and Noisy Student self-training (``kcv self-train``).

Pseudo-labels (Lee 2013, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning
Method for Deep Neural Networks"): a teacher trained on the labelled data labels a folder of
unlabeled images; predictions whose confidence is under ``threshold`` are dropped; a model
is then trained on labelled + pseudo-labelled images, with hard (argmax) or soft (the
teacher's probabilities) targets.

Noisy Student (Xie, Luong, Hovy & Le 2020, "Self-training with Noisy Student improves
ImageNet classification", arXiv:1911.04252) repeats this for ``rounds``: the teacher labels
*clean* images (no augmentation, inference mode); a student of equal or larger size learns
from labelled + pseudo-labelled images *with noise* — RandAugment on the input, and the
dropout and stochastic depth the architecture has (EfficientNet: dropout 0.2, stochastic
depth 0.2 by default; ``--student-model-arg`` raises them) — and then becomes the next
round's teacher.

Layout of a run (``saved_models/<name>/``)::

    rounds/round0/                 the teacher trained on the labels only (a normal run)
    rounds/pseudo_labels_round1.npz  what round 0's model said about the unlabeled images
    rounds/round1/ ...             the student of round 1, the teacher of round 2, ...
    summary.csv  summary.md        round, arch, pseudo-labels kept, val metric
    model.keras  metrics.json      the final student's (so eval/export/predict work on the run)
    config.json                    the final student's config + a "self_training" entry

Clean and noisy views: a pseudo-label travels with its image as ONE ``tf.data`` element
``(image, pseudo-label)`` (built from one ``from_tensor_slices`` over both, in the order the
teacher labelled them); the training stream's augmentation map turns that element into the
noisy view. Nothing pairs two separately shuffled datasets, so an image can never meet
another image's label. Segmentation pseudo-labels are per-pixel: pixels under the threshold
become 255 (ignored by the loss) and images with no pixel left are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kcv import metrics, runs
from kcv.errors import KcvError
from kcv.train.loop import TrainConfig, TrainPlugin, register_plugin
from kcv.contracts import CONFIG_FILE, CURVES_FILE, HISTORY_FILE, IGNORE_LABEL, METRICS_FILE, MODEL_FILE

DEFAULT_NOISE = "flip,crop=0.8,randaugment=2x9"
SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"


@dataclass
class SelfTrainConfig:
    """``kcv self-train``: ``base`` is the teacher's (round 0) training config; its ``out``
    and ``name`` place the self-training run itself.

    Attributes:
        unlabeled: ``--unlabeled``: a flat folder of images, ``shapes`` or ``shapes:N``.
        rounds: student rounds after the teacher (``--rounds``).
        threshold: keep pseudo-labels whose confidence (max probability) is at least this.
        soft: soft targets (the teacher's probabilities; classification only) or hard.
        balance: equal pseudo-label counts per class (classification; :func:`balanced`).
        teacher: an existing run to start from instead of training round 0.
        student_arch, student_model_args, student_epochs: the students' architecture,
            hyperparameters and epochs (default: the teacher's).
        noise: the students' augmentation policy (``--noise``).
    """

    base: TrainConfig
    unlabeled: str = "shapes"
    rounds: int = 1
    threshold: float = 0.8
    soft: bool = False
    balance: bool = True
    teacher: str | None = None
    student_arch: str | None = None
    student_model_args: dict | None = None
    student_epochs: int | None = None
    noise: str = DEFAULT_NOISE


# ------------------------------------------------------------------------------------------
# Pseudo-labels


@dataclass
class PseudoLabels:
    """What a teacher said about the unlabeled images, after thresholding."""

    indices: np.ndarray  # kept images, in the unlabeled set's order
    targets: np.ndarray  # int labels [n], soft [n, K] float32, or masks [n, H, W] uint8
    total: int  # images labelled
    pixel_fraction: float | None = None  # segmentation: labelled pixels kept
    accuracy: float | None = None  # against the true labels, where known (shapes)
    extra: dict = field(default_factory=dict)


def _probabilities(model, unlabeled, batch_size: int):
    """Softmax outputs of ``model`` on the clean unlabeled images, in order, batch by batch."""
    import tensorflow as tf

    from kcv.models import inference_model

    infer = inference_model(model)
    for x in unlabeled.dataset().batch(batch_size).prefetch(tf.data.AUTOTUNE):
        yield np.asarray(infer.predict_on_batch(tf.cast(x, tf.float32)), np.float32)


def balanced(keep: np.ndarray, hard: np.ndarray, conf: np.ndarray, num_classes: int) -> np.ndarray:
    """Noisy Student's data balancing (Xie et al. 2020, section 3): every predicted class
    gets the same number of images, the mean count per class — the most confident ones of
    a class that has more, the class's images repeated (most confident first) where it has
    fewer. A class the teacher never predicted stays empty."""
    groups = [keep[hard[keep] == c] for c in range(num_classes)]
    groups = [g[np.argsort(-conf[g], kind="stable")] for g in groups if g.size]
    if not groups:
        return keep
    quota = int(np.ceil(keep.size / len(groups)))
    return np.concatenate([np.resize(g, quota) for g in groups])


def pseudo_label(model, unlabeled, task: str, threshold: float, soft: bool = False,
                 balance: bool = False, batch_size: int = 64) -> PseudoLabels:
    """Label ``unlabeled`` (a :class:`~kcv.data.unlabeled.UnlabeledImages`) with ``model``
    in inference mode and drop predictions whose confidence is under ``threshold``;
    ``balance`` (classification): equal counts per class (:func:`balanced`)."""
    probs = np.concatenate(list(_probabilities(model, unlabeled, batch_size)))
    conf, hard = probs.max(-1), probs.argmax(-1)
    truth = unlabeled.truth
    if task == "classification":
        keep = np.flatnonzero(conf >= threshold)
        if balance:
            keep = balanced(keep, hard, conf, probs.shape[-1])
        targets = probs[keep] if soft else hard[keep].astype(np.int32)
        acc = float((hard[keep] == truth[keep]).mean()) if truth is not None and keep.size else None
        return PseudoLabels(keep, targets, len(probs), accuracy=acc)
    masks = np.where(conf >= threshold, hard, IGNORE_LABEL).astype(np.uint8)
    labelled = masks != IGNORE_LABEL
    keep = np.flatnonzero(labelled.any(axis=(1, 2)))
    acc = None
    if truth is not None and labelled.any():
        acc = float((masks[labelled] == truth[labelled]).mean())
    return PseudoLabels(keep, masks[keep], len(probs), float(labelled.mean()), acc)


def save_pseudo_labels(path, labels: PseudoLabels, unlabeled, threshold: float, soft: bool) -> Path:
    """Write the ``.npz`` a student round reads (atomically)."""
    with runs.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, indices=labels.indices.astype(np.int64), targets=labels.targets,
                                names=np.array(unlabeled.names), spec=np.array(unlabeled.spec),
                                img_size=np.array(unlabeled.img_size), threshold=np.array(threshold),
                                soft=np.array(bool(soft)), total=np.array(labels.total))
    return Path(path)


def _read_npz(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise KcvError(f"{path}: not a readable pseudo-labels file ({type(e).__name__})") from None


def with_pseudo_labels(source, path):
    """``source`` whose training split also holds the pseudo-labelled images of ``path``."""
    import tensorflow as tf

    from kcv.data.unlabeled import load_unlabeled

    z = _read_npz(path)
    unlabeled = load_unlabeled(str(z["spec"]), source.task, source.img_size)
    if list(unlabeled.names) != [str(n) for n in z["names"]]:
        raise KcvError(f"{path}: the unlabeled images ({unlabeled.spec}) changed since they were labelled")
    soft = bool(z["soft"])
    spec = source.raw("train").element_spec[1]
    targets = z["targets"] if soft else z["targets"].astype(spec.dtype.as_numpy_dtype)
    pseudo = unlabeled.dataset(z["indices"], targets).cache()
    k = source.num_classes

    def labelled():
        raw = source.raw("train")
        return raw.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), k))) if soft else raw

    def raw(split):
        return labelled().concatenate(pseudo) if split == "train" else source.raw(split)

    return dataclasses.replace(source, raw=raw, num_train=source.num_train + len(z["indices"]),
                               soft_targets=soft)


class PseudoLabelPlugin(TrainPlugin):
    """A student round: ``TrainConfig(pseudo_labels=FILE)`` adds the file's images."""

    def __init__(self):
        self.info: dict = {}

    def applies(self, cfg: TrainConfig) -> bool:
        return bool(cfg.pseudo_labels)

    def check(self, cfg: TrainConfig, spec) -> None:
        if cfg.pseudo_labels and not Path(cfg.pseudo_labels).is_file():
            raise KcvError(f"{cfg.pseudo_labels}: pseudo-labels file not found")

    def prepare_data(self, source, cfg: TrainConfig):
        labelled = source.num_train
        source = with_pseudo_labels(source, cfg.pseudo_labels)
        self.info = {"file": str(cfg.pseudo_labels), "images": source.num_train - labelled,
                     "soft": bool(source.soft_targets)}
        return source

    def record(self, cfg: TrainConfig) -> dict:
        return {"pseudo_labels_used": self.info}


register_plugin(PseudoLabelPlugin())


# ------------------------------------------------------------------------------------------
# Noisy Student rounds


def _checked(cfg: SelfTrainConfig):
    """``(resolved teacher config, resolved student config template, task)``."""
    from kcv.registry import get_spec

    if cfg.rounds < 1:
        raise KcvError(f"--rounds {cfg.rounds}: must be at least 1")
    if not 0.0 <= cfg.threshold < 1.0:
        raise KcvError(f"--threshold {cfg.threshold}: must be in [0, 1)")
    base = cfg.base.resolved()
    task = get_spec(base.arch).task
    if cfg.soft and task != "classification":
        raise KcvError("--soft: soft pseudo-labels are for classification; segmentation uses "
                       "per-pixel hard labels (pixels under --threshold are ignored)")
    student = dataclasses.replace(
        cfg.base, arch=cfg.student_arch or base.arch, augment=cfg.noise, img_size=base.img_size,
        epochs=cfg.student_epochs or cfg.base.epochs,
        model_args=dict(base.model_args if cfg.student_model_args is None else cfg.student_model_args))
    resolved = student.resolved()  # flag errors of the students too, before anything trains
    if get_spec(resolved.arch).task != task:
        raise KcvError(f"--student-arch {resolved.arch}: a {get_spec(resolved.arch).task} model; "
                       f"the teacher ({base.arch}) is {task}")
    if cfg.teacher:
        try:
            runs.resolve_run(cfg.teacher, base.out)
        except KcvError as e:
            raise KcvError(f"--teacher {e}") from None
    return base, student, task


def self_train(cfg: SelfTrainConfig) -> Path:
    """Run Noisy Student self-training (see the module docstring); return the run directory.

    Raises:
        KcvError: a bad flag, bad data or unlabeled folder, or a diverged round.
    """
    from kcv.data.unlabeled import load_unlabeled

    base, student, task = _checked(cfg)
    unlabeled = load_unlabeled(cfg.unlabeled, task, base.img_size)
    with _no_retracing_warnings():
        with runs.NewRunGuard():  # no run directory left by a round 0 that failed
            return _rounds(cfg, base, student, task, unlabeled)


@contextlib.contextmanager
def _no_retracing_warnings():
    """Each round builds new models, so TensorFlow warns that functions are "retracing";
    that is expected here and tells the user nothing."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _rounds(cfg: SelfTrainConfig, base: TrainConfig, student: TrainConfig, task: str, unlabeled) -> Path:
    from kcv.train.distill import load_teacher
    from kcv.train.loop import train

    run_dir = runs.new_run_dir(base.out, base.name or f"{base.arch}-selftrain")
    rounds_dir = run_dir / "rounds"
    say = print if base.verbose else (lambda *a, **k: None)
    say(f"self-training {base.arch} -> {run_dir}: {cfg.rounds} round(s), {len(unlabeled)} unlabeled "
        f"images ({cfg.unlabeled}), threshold {cfg.threshold:g}, {'soft' if cfg.soft else 'hard'} "
        f"pseudo-labels, student noise {cfg.noise}", flush=True)
    if cfg.teacher:
        teacher_dir = runs.resolve_run(cfg.teacher, base.out)
        rows = [_row(0, teacher_dir, "teacher (given)")]
    else:
        say("round 0: teacher on the labelled images only", flush=True)
        teacher_dir = train(dataclasses.replace(cfg.base, out=str(rounds_dir), name="round0"))
        rows = [_row(0, teacher_dir, "teacher (labels only)")]
    _write_summary(run_dir, rows)
    for r in range(1, cfg.rounds + 1):
        cfg_t = runs.load_config(teacher_dir)
        teacher = load_teacher(teacher_dir, task, cfg_t["class_names"], base.img_size)
        labels = pseudo_label(teacher, unlabeled, task, cfg.threshold, cfg.soft, cfg.balance)
        npz = save_pseudo_labels(rounds_dir / f"pseudo_labels_round{r}.npz", labels, unlabeled,
                                 cfg.threshold, cfg.soft)
        say(f"round {r}: {teacher_dir.name} labelled {labels.total} images, {len(labels.indices)} "
            f"pseudo-labels kept{' (balanced)' if cfg.balance and task == 'classification' else ''}"
            + (f" (accuracy {labels.accuracy:.3f} against the true labels)" if labels.accuracy is not None else ""),
            flush=True)
        student_dir = train(dataclasses.replace(student, out=str(rounds_dir), name=f"round{r}",
                                                pseudo_labels=str(npz)))
        rows.append(_row(r, student_dir, "student", labels))
        _write_summary(run_dir, rows)
        teacher_dir = student_dir
    _finish(run_dir, teacher_dir, cfg, rows)
    return run_dir


def _row(r: int, run_dir: Path, role: str, labels: PseudoLabels | None = None) -> dict:
    config = runs.load_config(run_dir)
    final = runs.read_json(run_dir / METRICS_FILE)
    monitor = metrics.monitor(config["task"])
    row = {"round": r, "arch": config["arch"], "role": role,
           "pseudo_labels_kept": len(labels.indices) if labels else None,
           "distinct_images": len(np.unique(labels.indices)) if labels else None,
           "unlabeled_images": labels.total if labels else None,
           "pixel_fraction_kept": labels.pixel_fraction if labels else None,
           "pseudo_label_accuracy": labels.accuracy if labels else None,
           "train_images": config.get("num_train"), monitor: final.get(monitor),
           "run": str(run_dir)}
    return {k: v for k, v in row.items() if v is not None or k in ("pseudo_labels_kept", monitor)}


def _write_summary(run_dir: Path, rows: list) -> None:
    from kcv.train.callbacks import rows_to_csv

    runs.write_text(run_dir / SUMMARY_CSV, rows_to_csv(rows, first=()))
    runs.write_text(run_dir / SUMMARY_MD, summary_table(rows) + "\n")


def summary_table(rows: list) -> str:
    """The markdown table of ``summary.md`` (and of ``kcv self-train``'s output)."""
    monitor = next(k for k in rows[0] if k.startswith("val_"))
    lines = [f"| round | arch | role | pseudo-labels kept | {monitor} |", "|---:|---|---|---:|---:|"]
    for row in rows:
        kept = "—" if row.get("pseudo_labels_kept") is None else \
            f"{row['pseudo_labels_kept']} / {row['unlabeled_images']}"
        if row.get("distinct_images") not in (None, row.get("pseudo_labels_kept")):
            kept += f" ({row['distinct_images']} distinct)"
        if row.get("pseudo_label_accuracy") is not None:
            kept += f" (acc {row['pseudo_label_accuracy']:.3f})"
        value = row.get(monitor)
        lines.append(f"| {row['round']} | {row['arch']} | {row['role']} | {kept} | "
                     f"{'—' if value is None else f'{value:.4f}'} |")
    return "\n".join(lines)


def _finish(run_dir: Path, final_dir: Path, cfg: SelfTrainConfig, rows: list) -> None:
    """Give the run the final student's history, metrics, config and (last, since with
    config.json it marks a complete run) model."""
    for name in (HISTORY_FILE, CURVES_FILE):
        if (final_dir / name).is_file():
            _copy(final_dir / name, run_dir / name)
    runs.write_json(run_dir / METRICS_FILE, runs.read_json(final_dir / METRICS_FILE))
    config = runs.load_config(final_dir)
    config.update(name=run_dir.name, out=str(run_dir.parent), self_training={
        "unlabeled": cfg.unlabeled, "rounds": cfg.rounds, "threshold": cfg.threshold,
        "soft": cfg.soft, "balance": cfg.balance, "noise": cfg.noise, "teacher": cfg.teacher,
        "final_round": str(final_dir),
        "summary": rows})
    runs.write_json(run_dir / CONFIG_FILE, config)
    _copy(final_dir / MODEL_FILE, run_dir / MODEL_FILE)


def _copy(src: Path, dst: Path) -> None:
    with runs.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
