"""Evaluate a trained model on a validation split: the numbers behind ``metrics.json`` and ``kcv eval``.

Classification: accuracy, top-5 accuracy, cross-entropy, per-class precision and recall,
confusion matrix. Segmentation: mean IoU, pixel accuracy, per-class IoU, cross-entropy
(label 255 ignored everywhere), confusion matrix over pixels.

Predictions come from the float32 model with ``training=False``; the maths is NumPy on
logits, so the figures do not depend on how the model was compiled (soft labels, mixed
precision, distillation wrappers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kcv import runs
from kcv.errors import KcvError
from kcv.contracts import CONFUSION_FILE, EVAL_FILE, main_head_model
from kcv.evaluation.scores import confusion_matrix, log_softmax, masked_nll, segmentation_report


def _predictions(model, dataset):
    """Yield ``(logits float32, int targets)`` per batch of ``dataset`` (main output only)."""
    net = main_head_model(model)
    for x, y in dataset:
        yield np.asarray(net.predict_on_batch(x), np.float32), np.asarray(y)


def classification_report(logits: np.ndarray, labels: np.ndarray, class_names) -> tuple[dict, np.ndarray]:
    """Scores of ``logits [N, K]`` against integer ``labels [N]``; returns ``(report, cm)``."""
    k = len(class_names)
    labels = labels.astype(np.int64)
    logp = log_softmax(logits)
    pred = logp.argmax(-1)
    top = np.argsort(-logp, axis=-1)[:, :min(5, k)]
    cm = confusion_matrix(labels, pred, k)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / np.maximum(cm.sum(0), 1), np.nan)
        recall = np.where(cm.sum(1) > 0, tp / np.maximum(cm.sum(1), 1), np.nan)
    per_class = {name: {"precision": _num(precision[i]), "recall": _num(recall[i]),
                        "support": int(cm[i].sum())} for i, name in enumerate(class_names)}
    report = {"val_accuracy": float((pred == labels).mean()),
              "val_top5_accuracy": float((top == labels[:, None]).any(-1).mean()),
              "val_loss": float(-logp[np.arange(len(labels)), labels].mean()),
              "per_class": per_class}
    return report, cm


def _num(v):
    return None if np.isnan(v) else float(v)


def evaluate_model(model, source, batch_size: int = 32, split: str = "val") -> tuple[dict, np.ndarray]:
    """Evaluate ``model`` (logits) on ``split`` of a :class:`~kcv.data.pipeline.DataSource`.

    Returns:
        ``(report, confusion_matrix)``; the report holds the ``metrics.json`` keys.
    """
    ds = source.dataset(split, batch_size)
    if source.task == "classification":
        logits, labels = zip(*_predictions(model, ds))
        return classification_report(np.concatenate(logits), np.concatenate(labels), source.class_names)
    k = source.num_classes
    cm = np.zeros((k, k), np.int64)
    nll, count = 0.0, 0
    for logits, masks in _predictions(model, ds):
        logp = log_softmax(logits)
        masks = masks.astype(np.int64)
        cm += confusion_matrix(masks, logp.argmax(-1), k)
        loss, pixels = masked_nll(logp, masks)
        nll, count = nll + loss, count + pixels
    report = {**segmentation_report(cm, source.class_names),
              "val_loss": nll / max(count, 1)}
    return report, cm


def evaluate_run(run=None, data: str | None = None, batch_size: int | None = None,
                 root=runs.DEFAULT_ROOT, crf: bool = False, long_side: int | None = None) -> tuple[dict, Path]:
    """``kcv eval``: evaluate a run's best model on its validation split or on ``data``.

    Writes ``eval.json`` and ``confusion.png`` into the run directory (atomically);
    segmentation also writes a colour mask and an overlay PNG per image into ``RUN/eval/``.
    ``crf`` (segmentation): refine the probabilities with the dense CRF first, and write
    ``eval_crf.json``, ``confusion_crf.png`` and ``RUN/eval_crf/`` instead. ``long_side``
    (segmentation, a model that takes any size): each image resized so its longer side is
    ``long_side`` before the model, scored at its own size
    (:func:`kcv.evaluation.segmentation.segmentation_scores`).

    Returns:
        ``(report, run_dir)``.
    """
    from kcv.viz.confusion import plot_confusion

    if batch_size is not None and batch_size < 1:
        raise KcvError(f"--batch-size {batch_size}: must be at least 1")
    found = runs.open_run(run, root)
    run_dir, cfg = found.path, found.config
    if crf and found.task != "segmentation":
        raise KcvError(f"--crf refines segmentation masks; {run_dir} is a {found.task} run")
    model = found.model()
    _check_long_side(long_side, found, model)
    data = data or cfg.get("data", "shapes")
    # a model trained on --crop crops is scored on whole images at their own size
    source = found.data_source(data, whole_images=True, own_size=long_side is not None)
    batch_size = int(batch_size or cfg.get("batch_size") or 32)
    if found.task == "segmentation":
        from kcv.postprocess.crf import crf_postprocess
        from kcv.evaluation.segmentation import segmentation_scores

        report, cm = segmentation_scores(model, source, batch_size, crf_postprocess() if crf else None,
                                         save_dir=run_dir / ("eval_crf" if crf else "eval"), long_side=long_side)
    else:
        report, cm = evaluate_model(model, source, batch_size)
    report = {"run": str(run_dir), "data": str(data), "split": "val", "num_images": source.num_val,
              **({"crf": True} if crf else {}), **({"long_side": long_side} if long_side else {}),
              **report, "confusion_matrix": cm.tolist(),
              "class_names": source.class_names}
    runs.write_json(run_dir / output_name(EVAL_FILE, crf), report)
    plot_confusion(cm, source.class_names, run_dir / output_name(CONFUSION_FILE, crf),
                   title=f"{cfg.get('arch', '')} on {data} (val{', CRF' if crf else ''})")
    return report, run_dir


def _check_long_side(long_side, found, model) -> None:
    if long_side is None:
        return
    if long_side < 1:
        raise KcvError(f"--long-side {long_side}: must be at least 1")
    if found.task != "segmentation":
        raise KcvError(f"--long-side: segmentation only; {found.path} is a {found.task} run")
    side = tuple(model.inputs[0].shape[1:3])
    if side != (None, None):
        raise KcvError(f"--long-side: {found.path}'s model takes {side[0]}x{side[1]} images only; "
                       "a run trained with --crop takes any size")


def output_name(name: str, crf: bool) -> str:
    """``eval.json`` → ``eval_crf.json`` when the report is of CRF-refined masks."""
    if not crf:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}_crf{dot}{ext}" if dot else f"{name}_crf"
