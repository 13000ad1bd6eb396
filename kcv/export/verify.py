"""Verification of an exported file against the Keras inference model."""

from __future__ import annotations

import numpy as np

from kcv import metrics


def task_metric(probs: np.ndarray, targets: np.ndarray, task: str, num_classes: int) -> tuple[str, float]:
    """``("accuracy", value)`` for classification, ``("miou", value)`` for segmentation."""
    pred = probs.argmax(-1)
    if task == "classification":
        return "accuracy", float(np.mean(pred == targets))
    cm = metrics.confusion_matrix(targets, pred, num_classes)
    return "miou", metrics.segmentation_report(cm, range(num_classes))["val_miou"]


def compare(reference: np.ndarray, candidate: np.ndarray, targets: np.ndarray, task: str,
            num_classes: int) -> dict:
    """Max |Δprob|, argmax agreement (per image or per pixel) and the task metric of both."""
    name, ref_value = task_metric(reference, targets, task, num_classes)
    _, value = task_metric(candidate, targets, task, num_classes)
    return {
        "max_abs_diff": float(np.max(np.abs(reference.astype(np.float64) - candidate))),
        "agreement": float(np.mean(reference.argmax(-1) == candidate.argmax(-1))),
        "metric": name,
        "metric_keras": ref_value,
        "metric_file": value,
        "metric_delta": value - ref_value,
    }
