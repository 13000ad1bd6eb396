"""Pure NumPy scores shared by every evaluation path: ``kcv eval``, the end of training,
export verification and ``kcv benchmark``. Segmentation scores ignore label 255
(:data:`kcv.contracts.IGNORE_LABEL`, docs/design.md §5)."""

from __future__ import annotations

import numpy as np

from kcv.contracts import IGNORE_LABEL


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis, in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def confusion_matrix(y_true, y_pred, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """``cm[t, p]`` = number of pixels/samples of true class ``t`` predicted as ``p``."""
    y_true = np.asarray(y_true).ravel().astype(np.int64)
    y_pred = np.asarray(y_pred).ravel().astype(np.int64)
    keep = y_true != ignore_label
    idx = y_true[keep] * num_classes + y_pred[keep]
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU_c = TP / (TP + FP + FN); NaN for a class absent from both truth and prediction."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


def segmentation_report(cm: np.ndarray, class_names) -> dict:
    """``val_miou`` (mean over classes present), ``val_pixel_accuracy``, ``per_class_iou``."""
    iou = iou_per_class(cm)
    total = cm.sum()
    return {
        "val_miou": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else 0.0,
        "val_pixel_accuracy": float(np.trace(cm) / total) if total else 0.0,
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(class_names, iou)},
    }


def masked_nll(logp: np.ndarray, masks: np.ndarray) -> tuple[float, int]:
    """``(sum, count)`` of the negative log-probability of the true class over labelled
    pixels of ``logp [..., C]`` and int ``masks [...]`` (the ignore label skipped)."""
    valid = masks != IGNORE_LABEL
    picked = np.take_along_axis(logp, np.where(valid, masks, 0)[..., None], axis=-1)[..., 0]
    return -float(picked[valid].sum()), int(valid.sum())


def task_metric(probs: np.ndarray, targets: np.ndarray, task: str, num_classes: int) -> tuple[str, float]:
    """``("accuracy", value)`` for classification, ``("miou", value)`` for segmentation."""
    pred = probs.argmax(-1)
    if task == "classification":
        return "accuracy", float(np.mean(pred == targets))
    cm = confusion_matrix(targets, pred, num_classes)
    return "miou", segmentation_report(cm, range(num_classes))["val_miou"]
