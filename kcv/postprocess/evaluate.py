"""Segmentation scores with a post-processing step between the softmax and the argmax
(``kcv eval --crf``): the network's probabilities for each validation image go through
``postprocess(image uint8 [H, W, 3], probs [H, W, C]) -> probs`` — the hook
``kcv predict`` uses, e.g. :func:`kcv.postprocess.crf.crf_postprocess` — and the
confusion matrix, mIoU, pixel accuracy and per-class IoU (label 255 ignored) are computed on
the refined masks. ``val_loss`` is the mean negative log-probability of the true class under
the refined probabilities.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from kcv import metrics

PostProcess = Callable[[np.ndarray, np.ndarray], np.ndarray]


def segmentation_scores(model, source, batch_size: int = 16, postprocess: PostProcess | None = None,
                        split: str = "val") -> tuple[dict, np.ndarray]:
    """``(report, confusion_matrix)`` of ``model`` (logits) on ``split`` of a data source.

    The report holds ``val_miou``, ``val_pixel_accuracy``, ``per_class_iou`` and ``val_loss``.
    """
    import tensorflow as tf

    main = model.outputs[0]
    net = keras.Model(model.inputs, main) if len(model.outputs) > 1 else model
    step = tf.function(lambda x: tf.nn.softmax(tf.cast(net(x, training=False), tf.float32)),
                       reduce_retracing=True)
    k = source.num_classes
    cm = np.zeros((k, k), np.int64)
    nll, count = 0.0, 0
    for images, masks in source.dataset(split, batch_size):
        probs = np.asarray(step(images), np.float32)
        images = np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8)
        if postprocess is not None:
            probs = np.stack([postprocess(img, p) for img, p in zip(images, probs)])
        masks = np.asarray(masks).astype(np.int64)
        cm += metrics.confusion_matrix(masks, probs.argmax(-1), k)
        valid = masks != metrics.IGNORE_LABEL
        picked = np.take_along_axis(probs, np.where(valid, masks, 0)[..., None], axis=-1)[..., 0]
        nll -= float(np.log(np.clip(picked[valid], 1e-8, 1.0)).sum())
        count += int(valid.sum())
    report = {**metrics.segmentation_report(cm, source.class_names), "val_loss": nll / max(count, 1)}
    return report, cm


def evaluate_segmentation_run(run=None, data: str | None = None, crf: bool = False, batch_size: int | None = None,
                              write: bool = True) -> dict:
    """Score a segmentation run's best model on its validation data, optionally with the dense
    CRF; with ``write`` the report goes to ``RUN/eval_crf.json`` (or ``eval.json``)."""
    from kcv import runs
    from kcv.data.pipeline import load_data
    from kcv.errors import KcvError
    from kcv.postprocess.crf import crf_postprocess

    run_dir = runs.resolve_run(run)
    model, cfg = runs.load_run(run_dir)
    if cfg["task"] != "segmentation":
        raise KcvError(f"--crf refines segmentation masks; {run_dir} is a {cfg['task']} run")
    hook = crf_postprocess() if crf else None
    data = data or cfg.get("data", "shapes")
    source = load_data(data, "segmentation", int(cfg["img_size"]), seed=int(cfg.get("seed", 0)),
                       val_split=float(cfg.get("val_split", 0.2)))
    report, cm = segmentation_scores(model, source, int(batch_size or cfg.get("batch_size") or 16), hook)
    report = {"run": str(run_dir), "data": str(data), "split": "val", "num_images": source.num_val,
              "crf": bool(crf), **report, "confusion_matrix": cm.tolist(), "class_names": source.class_names}
    if write:
        runs.write_json(run_dir / ("eval_crf.json" if crf else "eval.json"), report)
    return report
