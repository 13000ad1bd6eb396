"""One gate for reduced-precision files: fp16 and dynamic-range TFLite, full-int8 TFLite
and int8 ONNX.

A float file (fp32 TFLite, ONNX, SavedModel) must reproduce the Keras model (max |Δprob| ≤
1e-4). A reduced-precision file cannot, and is judged on what its user sees:

1. **agreement** — the share of images (classification) or pixels (segmentation) whose
   top class equals the Keras model's — at least ``min_agreement``;
2. **metric drop** — accuracy or mIoU at most ``max_drop`` points below Keras, *when the
   model is strong enough for the metric to judge*.

max |Δprob| is reported, not gated: over millions of pixels the max finds the class
boundaries, where the softmax is steepest. A U-Net's fp16 file (8 base filters, 2 epochs,
64 px) reached 5.96e-2 while agreeing on 99.90 % of pixels with an unchanged mIoU.

A metric near its floor judges nothing: the same run's int8 file agreed on only 74 % of
pixels, yet its mIoU *rose* (0.060 → 0.074) and a drop-only gate passed it. A model is
too weak for its metric when it beats the majority-class baseline (the metric of
predicting the most frequent class everywhere) by less than :data:`WEAK_MARGIN` of the
headroom above that baseline; the entry then says so (``metric_judges: false``, ``note``)
and agreement alone decides.
"""

from __future__ import annotations

import numpy as np

from kcv.export import verify

MIN_AGREEMENT = 0.98
# Share of the headroom (1 - baseline) a model must gain over the majority-class baseline
# before its metric can judge a file: 0.25 puts a 3-class classifier's floor at 50 %
# accuracy (baseline 1/3) and a U-Net predicting all background (mIoU 0.18) at 0.38.
WEAK_MARGIN = 0.25


def baseline(targets: np.ndarray, task: str, num_classes: int) -> float:
    """The task metric of always predicting the most frequent class of ``targets``."""
    from kcv.contracts import IGNORE_LABEL

    valid = targets[targets != IGNORE_LABEL] if task == "segmentation" else targets
    majority = int(np.bincount(valid.reshape(-1).astype(np.int64), minlength=num_classes).argmax())
    shape = targets.shape + (num_classes,)
    probs = np.zeros(shape, np.float32)
    probs[..., majority] = 1.0
    return verify.task_metric(probs, targets, task, num_classes)[1]


def too_weak(metric_keras: float, floor: float) -> bool:
    """Whether a model at ``metric_keras`` is too close to the baseline ``floor`` to judge."""
    return metric_keras - floor < WEAK_MARGIN * (1.0 - floor)


def judge(entry: dict, floor: float, max_drop: float, min_agreement: float, allow: bool,
          hint: str = "") -> dict:
    """``status`` (ok / accepted / failed), ``rule``, ``drop_points``, ``metric_judges``,
    ``baseline`` and, where it applies, ``note`` and ``reason`` for one verified entry."""
    name = entry["metric"]
    drop = round(-100 * entry["metric_delta"], 3)
    judges = not too_weak(entry["metric_keras"], floor)
    out = {"drop_points": drop, "metric_judges": judges, "baseline": round(float(floor), 4)}
    rule = f"agreement >= {min_agreement:.2%}"
    failures = []
    if entry["agreement"] < min_agreement:
        failures.append(f"agreement with Keras {entry['agreement']:.2%} < {min_agreement:.2%}")
    if judges:
        rule += f" and {name} drop <= {max_drop:g} points"
        if drop > max_drop:
            failures.append(f"{name} dropped {drop:.2f} points > --max-drop {max_drop:g}")
    else:
        out["note"] = (f"model too weak for {name} to judge the file ({entry['metric_keras']:.3f} vs "
                       f"{floor:.3f} for always predicting the majority class); judged on agreement only")
    if not failures:
        return {**out, "status": "ok", "rule": rule}
    if allow:
        return {**out, "status": "accepted", "rule": rule + " (not met, --allow-drop)"}
    return {**out, "status": "failed", "rule": rule, "reason": "; ".join(failures) + hint}
