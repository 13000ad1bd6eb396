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
from kcv.capabilities import FITS
from kcv.errors import KcvError
from kcv import options
from kcv.train.loop import TrainConfig, TrainPlugin, register_plugin
from kcv.contracts import CONFIG_FILE, CURVES_FILE, HISTORY_FILE, IGNORE_LABEL, METRICS_FILE, MODEL_FILE

SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"
# A teacher this close to chance (accuracy < 1/K + margin, or within two binomial standard
# deviations of it on the validation images: near_chance; mIoU < 1/K) labels noise: its
# confident predictions are kept, but no share of the rest is forced into training.
NEAR_CHANCE_MARGIN = 0.05


SelfTrainConfig = options.config_class("SelfTrainConfig", (options.SELF_TRAIN,), first=[("base", TrainConfig)],
                                       module=__name__, doc="""\
``kcv self-train``: ``base`` is the teacher's (round 0) training config; its ``out`` and
``name`` place the self-training run itself. The other fields are the options of
:data:`kcv.options.SELF_TRAIN` (declared there, once):

- ``unlabeled``: a flat folder of images, ``shapes`` or ``shapes:N``.
- ``rounds``: student rounds after the teacher.
- ``threshold``: keep pseudo-labels whose confidence (max probability) is at least this.
- ``soft``: soft targets (the teacher's probabilities; classification only) or hard.
- ``balance``: equal pseudo-label counts per class (classification; :func:`balanced`).
- ``teacher``: an existing run to start from instead of training round 0.
- ``student_arch``, ``student_model_args``, ``student_epochs``: the students' architecture,
  hyperparameters and epochs (default: the teacher's).
- ``noise``: the students' augmentation policy; ``auto`` scales it with the image size and
  the student's capacity (:func:`default_noise`).
- ``min_keep``: the share of each predicted class's images (pixels) kept whatever
  ``threshold`` says (:func:`class_thresholds`), so a round cannot collapse to no
  pseudo-labels when the teacher is under-confident.
- ``round_patience`` (``--patience``): stop after this many students in a row that do not
  beat the best model so far.
""")


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


def class_thresholds(conf: np.ndarray, hard: np.ndarray, num_classes: int, threshold: float,
                     min_keep: float) -> np.ndarray:
    """Per-class confidence thresholds that cannot starve a class: for each predicted class
    c, ``min(threshold, q_c)`` where ``q_c`` is the confidence of the k-th most confident
    sample (pixel) predicted as c, k = ⌈``min_keep`` · count⌉ — so at least ``min_keep`` of
    each predicted class is kept, and every sample above ``threshold`` too.

    A fixed threshold collapses when the teacher is under-confident (a held-out set kept 9 of
    1,287 images in round 2); class-wise thresholds that follow the teacher's own confidence
    are the remedy of FlexMatch (Zhang et al. 2021, "FlexMatch: Boosting Semi-Supervised
    Learning with Curriculum Pseudo Labeling", arXiv:2110.08263), in the simpler quantile
    form. ``min_keep`` 0 gives the fixed threshold back.
    """
    out = np.full(num_classes, float(threshold))
    if min_keep <= 0:
        return out
    conf, hard = conf.ravel(), hard.ravel()
    for c in range(num_classes):
        mine = np.sort(conf[hard == c])[::-1]
        if mine.size:
            k = int(np.ceil(min(min_keep, 1.0) * mine.size))
            out[c] = min(out[c], float(mine[max(k, 1) - 1]))
    return out


def pseudo_label(model, unlabeled, task: str, threshold: float, soft: bool = False,
                 balance: bool = False, batch_size: int = 64, min_keep: float = 0.0) -> PseudoLabels:
    """Label ``unlabeled`` (a :class:`~kcv.data.unlabeled.UnlabeledImages`) with ``model``
    in inference mode and drop predictions under their class's threshold
    (:func:`class_thresholds`: ``threshold``, lowered where needed to keep ``min_keep`` of
    each predicted class); ``balance`` (classification): equal counts per class
    (:func:`balanced`). ``extra`` holds the per-class thresholds and kept counts."""
    probs = np.concatenate(list(_probabilities(model, unlabeled, batch_size)))
    conf, hard = probs.max(-1), probs.argmax(-1)
    k = probs.shape[-1]
    tau = class_thresholds(conf, hard, k, threshold, min_keep)
    confident = conf >= tau[hard]
    truth = unlabeled.truth
    if task == "classification":
        keep = np.flatnonzero(confident)
        extra = {"class_thresholds": tau.round(4).tolist(),
                 "kept_per_class": np.bincount(hard[keep], minlength=k).tolist()}
        if balance:
            keep = balanced(keep, hard, conf, k)
        targets = probs[keep] if soft else hard[keep].astype(np.int32)
        acc = float((hard[keep] == truth[keep]).mean()) if truth is not None and keep.size else None
        return PseudoLabels(keep, targets, len(probs), accuracy=acc, extra=extra)
    masks = np.where(confident, hard, IGNORE_LABEL).astype(np.uint8)
    labelled = masks != IGNORE_LABEL
    keep = np.flatnonzero(labelled.any(axis=(1, 2)))
    acc = None
    if truth is not None and labelled.any():
        acc = float((masks[labelled] == truth[labelled]).mean())
    extra = {"class_thresholds": tau.round(4).tolist(),
             "kept_per_class": np.bincount(masks[labelled].ravel(), minlength=k).tolist()}
    return PseudoLabels(keep, masks[keep], len(probs), float(labelled.mean()), acc, extra)


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


register_plugin(PseudoLabelPlugin)


# ------------------------------------------------------------------------------------------
# Noisy Student rounds


def default_noise(img_size: int, params: int) -> str:
    """The students' input noise for ``--noise auto``: Noisy Student's ``randaugment=2x9``
    with ``crop=0.8`` is an ImageNet setting (224 px, EfficientNets); on 32 px images and
    small models it left students at 0.26–0.55 *training* accuracy on a held-out set, i.e.
    unable to fit their own data. The magnitude grows linearly from 3 at 32 px to 9 at
    224 px, one op below 96 px, a milder crop below 96 px, and half the magnitude for
    models under a million parameters (less capacity to absorb noise)."""
    frac = min(max((img_size - 32) / (224 - 32), 0.0), 1.0)
    magnitude = 3 + 6 * frac
    if params < 1_000_000:
        magnitude /= 2
    ops = 1 if img_size < 96 else 2
    crop = 0.9 if img_size < 96 else 0.8
    return f"flip,crop={crop},randaugment={ops}x{max(int(round(magnitude)), 1)}"


def _student_noise(cfg: SelfTrainConfig, arch: str, img_size: int, model_args: dict) -> str:
    if cfg.noise != "auto":
        return cfg.noise
    from kcv.models.feasibility import plan_model

    # planned, not built: a student too large for memory is refused (check_feasible), not
    # allocated here (--img-size 100000 was an out-of-memory traceback)
    return default_noise(img_size, plan_model(arch, 10, img_size, model_args).params)


def _checked(cfg: SelfTrainConfig):
    """``(resolved teacher config, resolved student config template, task)``."""
    from kcv.registry import get_spec

    options.check_values(cfg, options.SELF_TRAIN)
    base = cfg.base.resolved()
    task = get_spec(base.arch).task
    _refuse_reference_students(cfg, base)
    if cfg.soft and task != "classification":
        raise KcvError("--soft: soft pseudo-labels are for classification; segmentation uses "
                       "per-pixel hard labels (pixels under --threshold are ignored)")
    student = dataclasses.replace(
        cfg.base, arch=cfg.student_arch or base.arch, img_size=base.img_size,
        augment=None if cfg.noise == "auto" else cfg.noise, epochs=cfg.student_epochs or cfg.base.epochs,
        model_args=dict(base.model_args if cfg.student_model_args is None else cfg.student_model_args))
    resolved = student.resolved()  # flag errors of the students too, before anything trains
    if get_spec(resolved.arch).task != task:
        raise KcvError(f"--student-arch {resolved.arch}: a {get_spec(resolved.arch).task} model; "
                       f"the teacher ({base.arch}) is {task}")
    from kcv.models.feasibility import check_feasible

    # sizes that cannot train are refused before round 0, teacher's and students' alike
    check_feasible(base.arch, 2, base.img_size, base.batch_size, base.model_args)
    check_feasible(resolved.arch, 2, base.img_size, resolved.batch_size, resolved.model_args)
    student = dataclasses.replace(student, augment=_student_noise(cfg, resolved.arch, base.img_size,
                                                                  resolved.model_args))
    if cfg.teacher:
        try:
            runs.resolve_run(cfg.teacher, base.out)
        except KcvError as e:
            raise KcvError(f"--teacher {e}") from None
    return base, student, task


def _refuse_reference_students(cfg: SelfTrainConfig, base: TrainConfig) -> None:
    """Students learn from pseudo-labels by gradient descent; a model fitted from a
    reference set would drop them without a word. (It may be the round-0 teacher.)"""
    from kcv.registry import get_spec

    arch = cfg.student_arch or base.arch
    caps = get_spec(arch).capabilities
    if not caps.gradients:
        flag = "--student-arch" if cfg.student_arch else "--arch"
        raise KcvError(f"{flag} {arch}: the students would be {arch}, which is {caps.describe()} "
                       f"and cannot learn from pseudo-labels; pass --student-arch with a model "
                       f"{FITS['gradients']}")


def self_train(cfg: SelfTrainConfig) -> Path:
    """Run Noisy Student self-training (see the module docstring); return the run directory.

    The run's model is the best on the validation split among the teacher and every
    student (a student that does not beat it is never handed back).

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


def near_chance(value: float | None, task: str, num_classes: int, num_val: int | None = None) -> bool:
    """Whether a validation score is no better than guessing.

    Classification: accuracy under chance 1/K plus the larger of ``NEAR_CHANCE_MARGIN`` and
    two binomial standard deviations of a guesser's accuracy on ``num_val`` images,
    2·sqrt(p(1−p)/n) — on 37 validation images and 3 classes a guesser scores 0.43 or more
    one time in seven, so 0.43 there is no evidence of a teacher worth following (a real
    run: its pseudo-labels were 0.331 accurate). Segmentation: mIoU under 1/K."""
    if value is None:
        return True
    chance = 1.0 / num_classes
    if task != "classification":
        return value < chance
    margin = NEAR_CHANCE_MARGIN
    if num_val:
        margin = max(margin, 2.0 * float(np.sqrt(chance * (1.0 - chance) / num_val)))
    return value < chance + margin


def _rounds(cfg: SelfTrainConfig, base: TrainConfig, student: TrainConfig, task: str, unlabeled) -> Path:
    from kcv.train.distill import load_teacher
    from kcv.train.loop import train

    run_dir = runs.new_run_dir(base.out, base.name or f"{base.arch}-selftrain")
    rounds_dir = run_dir / "rounds"
    say = print if base.verbose else (lambda *a, **k: None)
    say(f"self-training {base.arch} -> {run_dir}: up to {cfg.rounds} round(s), {len(unlabeled)} unlabeled "
        f"images ({cfg.unlabeled}), threshold {cfg.threshold:g} (at least {cfg.min_keep:.0%} of each "
        f"predicted class kept), {'soft' if cfg.soft else 'hard'} pseudo-labels, student noise "
        f"{student.augment}", flush=True)
    rows = [_teacher_row(cfg, base, rounds_dir, say)]
    _write_summary(run_dir, rows)
    best, since_best, why = 0, 0, f"all {cfg.rounds} round(s) ran"
    for r in range(1, cfg.rounds + 1):
        # Noisy Student: the latest student teaches the next round. With --patience 1 that is
        # always the best model (a round runs only after an improvement); with more patience a
        # round that did not improve still hands on new pseudo-labels — re-labelling with the
        # best model would give the same labels and, deterministic training, the same student.
        t = len(rows) - 1
        teacher_dir = Path(rows[t]["run"])
        cfg_t = runs.load_config(teacher_dir)
        teacher = load_teacher(teacher_dir, task, cfg_t["class_names"], base.img_size)
        chance = near_chance(rows[t].get(_monitor(rows)), task, len(cfg_t["class_names"]), cfg_t.get("num_val"))
        labels = pseudo_label(teacher, unlabeled, task, cfg.threshold, cfg.soft, cfg.balance,
                              min_keep=0.0 if chance else cfg.min_keep)
        say(f"round {r}: round {rows[t]['round']}'s model labelled {labels.total} images, "
            f"{len(labels.indices)} pseudo-labels kept"
            + (" (balanced)" if cfg.balance and task == "classification" else "")
            + (f" (accuracy {labels.accuracy:.3f} against the true labels)" if labels.accuracy is not None else "")
            + (" — teacher near chance: only --threshold applies" if chance else ""), flush=True)
        if not len(labels.indices):
            why = (f"round {r}: no pseudo-label reached the threshold {cfg.threshold:g}"
                   + (" (the teacher is near chance)" if chance else "") + "; stopped")
            say(why, flush=True)
            break
        npz = save_pseudo_labels(rounds_dir / f"pseudo_labels_round{r}.npz", labels, unlabeled,
                                 cfg.threshold, cfg.soft)
        student_dir = train(dataclasses.replace(student, out=str(rounds_dir), name=f"round{r}",
                                                pseudo_labels=str(npz)))
        rows.append(_row(r, student_dir, "student", labels, teacher_round=rows[t]["round"]))
        _write_summary(run_dir, rows)
        monitor = _monitor(rows)
        if _score(rows[-1], monitor) > _score(rows[best], monitor):
            best, since_best = len(rows) - 1, 0
            continue
        since_best += 1
        if since_best >= cfg.round_patience and r < cfg.rounds:
            why = (f"round {r}: the student did not beat round {rows[best]['round']} for "
                   f"{since_best} round(s) (--patience {cfg.round_patience}); stopped")
            say(why, flush=True)
            break
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    reason = (f"round {rows[best]['round']} ({rows[best]['role']}) has the best {_monitor(rows)} "
              f"{_score(rows[best], _monitor(rows)):.4f}; {why}")
    say(f"result: {reason}", flush=True)
    _finish(run_dir, Path(rows[best]["run"]), cfg, rows, reason)
    return run_dir


def _teacher_row(cfg: SelfTrainConfig, base: TrainConfig, rounds_dir: Path, say) -> dict:
    """Round 0: the given ``--teacher`` (scored again on this data's validation split, so
    that it competes with the students on the same images), or a teacher trained on the
    labels only."""
    from kcv.train.loop import train

    if not cfg.teacher:
        say("round 0: teacher on the labelled images only", flush=True)
        return _row(0, train(dataclasses.replace(cfg.base, out=str(rounds_dir), name="round0")),
                    "teacher (labels only)")
    from kcv.data.pipeline import load_data
    from kcv.evaluation.evaluate import evaluate_model
    from kcv.train.distill import load_teacher

    teacher_dir = runs.resolve_run(cfg.teacher, base.out)
    source = load_data(base.data, runs.load_config(teacher_dir)["task"], base.img_size, seed=base.seed,
                       val_split=base.val_split)
    model = load_teacher(teacher_dir, source.task, source.class_names, base.img_size)
    report, _ = evaluate_model(model, source, base.batch_size)
    row = _row(0, teacher_dir, "teacher (given)")
    monitor = metrics.monitor(source.task)
    row[monitor] = report.get(monitor)
    return row


def _monitor(rows: list) -> str:
    return next(k for k in rows[0] if k.startswith("val_"))


def _score(row: dict, monitor: str) -> float:
    value = row.get(monitor)
    return -np.inf if value is None or not np.isfinite(value) else float(value)


def _train_metric(run_dir: Path) -> float | None:
    """The last epoch's training accuracy (classification) or pixel accuracy — how well the
    model fits its own (noisy) training data."""
    import csv

    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.read_text().splitlines()))
    for key in ("accuracy", "pixel_accuracy"):
        if rows and rows[-1].get(key) not in (None, ""):
            return round(float(rows[-1][key]), 4)
    return None


def _row(r: int, run_dir: Path, role: str, labels: PseudoLabels | None = None,
         teacher_round: int | None = None) -> dict:
    config = runs.load_config(run_dir)
    final = runs.read_json(run_dir / METRICS_FILE)
    monitor = metrics.monitor(config["task"])
    extra = labels.extra if labels else {}
    row = {"round": r, "arch": config["arch"], "role": role, "teacher_round": teacher_round,
           "pseudo_labels_kept": len(labels.indices) if labels else None,
           "distinct_images": len(np.unique(labels.indices)) if labels else None,
           "unlabeled_images": labels.total if labels else None,
           "kept_per_class": extra.get("kept_per_class"),
           "class_thresholds": extra.get("class_thresholds"),
           "pixel_fraction_kept": labels.pixel_fraction if labels else None,
           "pseudo_label_accuracy": labels.accuracy if labels else None,
           "train_images": config.get("num_train"), "train_accuracy": _train_metric(run_dir),
           monitor: final.get(monitor), "run": str(run_dir)}
    return {k: v for k, v in row.items() if v is not None or k in ("pseudo_labels_kept", monitor)}


def _write_summary(run_dir: Path, rows: list) -> None:
    from kcv.train.callbacks import rows_to_csv

    flat = [{k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()} for row in rows]
    runs.write_text(run_dir / SUMMARY_CSV, rows_to_csv(flat, first=()))
    runs.write_text(run_dir / SUMMARY_MD, summary_table(rows) + "\n")


def summary_table(rows: list) -> str:
    """The markdown table of ``summary.md`` (and of ``kcv self-train``'s output): every
    round, what it kept (per class), how well it fits its training data, its validation
    score, and which model is the result (``*``)."""
    monitor = _monitor(rows)
    lines = [f"| round | arch | role | pseudo-labels kept | per class | train acc | {monitor} |",
             "|---:|---|---|---:|---|---:|---:|"]
    for row in rows:
        kept = "—" if row.get("pseudo_labels_kept") is None else \
            f"{row['pseudo_labels_kept']} / {row['unlabeled_images']}"
        if row.get("distinct_images") not in (None, row.get("pseudo_labels_kept")):
            kept += f" ({row['distinct_images']} distinct)"
        if row.get("pseudo_label_accuracy") is not None:
            kept += f" (acc {row['pseudo_label_accuracy']:.3f})"
        per_class = " ".join(str(n) for n in row.get("kept_per_class") or []) or "—"
        fit = row.get("train_accuracy")
        value = row.get(monitor)
        mark = " *" if row.get("chosen") else ""
        lines.append(f"| {row['round']} | {row['arch']} | {row['role']} | {kept} | {per_class} | "
                     f"{'—' if fit is None else f'{fit:.3f}'} | "
                     f"{'—' if value is None else f'{value:.4f}'}{mark} |")
    return "\n".join(lines)


def _finish(run_dir: Path, final_dir: Path, cfg: SelfTrainConfig, rows: list, reason: str) -> None:
    """Give the run the chosen round's history, metrics, config and (last, since with
    config.json it marks a complete run) model."""
    for name in (HISTORY_FILE, CURVES_FILE):
        if (final_dir / name).is_file():
            _copy(final_dir / name, run_dir / name)
    runs.write_json(run_dir / METRICS_FILE, runs.read_json(final_dir / METRICS_FILE))
    config = runs.load_config(final_dir)
    config.update(name=run_dir.name, out=str(run_dir.parent), self_training={
        "unlabeled": cfg.unlabeled, "rounds": cfg.rounds, "threshold": cfg.threshold,
        "min_keep": cfg.min_keep, "patience": cfg.round_patience, "soft": cfg.soft, "balance": cfg.balance,
        "noise": cfg.noise, "teacher": cfg.teacher, "final_round": str(final_dir),
        "chosen_round": next(r["round"] for r in rows if r.get("chosen")), "reason": reason,
        "summary": rows})
    runs.write_json(run_dir / CONFIG_FILE, config)
    _copy(final_dir / MODEL_FILE, run_dir / MODEL_FILE)


def _copy(src: Path, dst: Path) -> None:
    with runs.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
