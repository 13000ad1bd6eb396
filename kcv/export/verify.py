"""Verification of an exported file against the Keras inference model (the scores it
compares are :mod:`kcv.evaluation.scores`)."""

from __future__ import annotations

import numpy as np

from kcv.evaluation.scores import task_metric


def compare(reference: np.ndarray, candidate: np.ndarray, targets: np.ndarray, task: str,
            num_classes: int, ties: np.ndarray | None = None, tie_rule: str = "") -> dict:
    """Max |Δprob|, argmax agreement (per image or per pixel) and the task metric of both.

    ``ties`` (bool per image, for a model with the ``ties`` capability:
    :func:`kcv.capabilities.tie_layer`) marks images whose output sits at a tie (a k-NN vote
    whose k-th and (k+1)-th neighbours are equally far, described by ``tie_rule``): they are
    left out of ``max_abs_diff`` and counted in ``ties`` (their own max in
    ``max_abs_diff_ties``); agreement and the metric still cover every image.
    """
    name, ref_value = task_metric(reference, targets, task, num_classes)
    _, value = task_metric(candidate, targets, task, num_classes)
    diff = np.abs(reference.astype(np.float64) - candidate).reshape(len(reference), -1).max(axis=1)
    extra = {}
    if ties is not None and ties.any():
        extra = {"ties": int(ties.sum()), "tie_rule": tie_rule, "max_abs_diff_ties": float(diff[ties].max())}
        diff = diff[~ties] if (~ties).any() else np.zeros(1)
    return {
        **extra,
        "max_abs_diff": float(diff.max()),
        "agreement": float(np.mean(reference.argmax(-1) == candidate.argmax(-1))),
        "metric": name,
        "metric_keras": ref_value,
        "metric_file": value,
        "metric_delta": value - ref_value,
    }
