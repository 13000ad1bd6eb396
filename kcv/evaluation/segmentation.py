"""The segmentation path of ``kcv eval``: scores, optionally after a post-processing step
between the softmax and the argmax (``kcv eval --crf``), and a colour mask and overlay PNG
per validation image.

The network's probabilities for each validation image go through
``postprocess(image uint8 [H, W, 3], probs [H, W, C]) -> probs`` — the hook ``kcv predict``
uses, e.g. :func:`kcv.postprocess.crf.crf_postprocess` — and the confusion matrix, mIoU,
pixel accuracy and per-class IoU (label 255 ignored) are computed on the resulting masks.
``val_loss`` is the mean negative log-probability of the true class (from the logits, as
:func:`kcv.evaluation.evaluate.evaluate_model` computes it, or from the refined probabilities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from kcv.contracts import main_head_model
from kcv.evaluation.scores import confusion_matrix, log_softmax, masked_nll, segmentation_report

PostProcess = Callable[[np.ndarray, np.ndarray], np.ndarray]


def segmentation_scores(model, source, batch_size: int = 16, postprocess: PostProcess | None = None,
                        save_dir: Path | None = None, split: str = "val",
                        long_side: int | None = None) -> tuple[dict, np.ndarray]:
    """``(report, confusion_matrix)`` of ``model`` (logits) on ``split`` of a data source.

    Args:
        postprocess: refines each image's probabilities before the argmax (``None``: none).
        long_side: the model sees each image resized so its longer side is ``long_side``
            (aspect kept, :func:`kcv.data.stores.resize_long_side`); its logits are then
            upsampled bilinearly to the mask's own size and scored there, against the
            mask as drawn (FCN, Long et al. 2015, and DeepLab, Chen et al. 2018, upsample the
            logits to the label's resolution; resizing the mask instead would score a
            nearest-neighbour copy of it). ``None``: the images as ``source`` gives them.
        save_dir: if given, ``{split}{i:04d}_mask.png`` (palette PNG, pixel = class index) and
            ``{split}{i:04d}_overlay.png`` for every image go there.

    Returns:
        The report holds ``val_miou``, ``val_pixel_accuracy``, ``per_class_iou``, ``val_loss``.
    """
    import tensorflow as tf

    from kcv.data.stores import resize_long_side
    from kcv.viz.overlay import save_mask_and_overlay

    net = main_head_model(model)
    step = tf.function(lambda x: tf.cast(net(x, training=False), tf.float32), reduce_retracing=True)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    k = source.num_classes
    cm = np.zeros((k, k), np.int64)
    nll, count, index = 0.0, 0, 0
    for images, masks in source.dataset(split, batch_size):
        if long_side is None:
            logits = step(images)
        else:
            logits = step(resize_long_side(images, long_side))
            logits = tf.image.resize(logits, tf.shape(masks)[1:3], method="bilinear")
        logp = log_softmax(np.asarray(logits))
        images = np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8)
        if postprocess is not None:
            probs = np.stack([postprocess(img, p) for img, p in zip(images, np.exp(logp).astype(np.float32))])
            logp = np.log(np.clip(probs, 1e-8, 1.0))
        masks = np.asarray(masks).astype(np.int64)
        pred = logp.argmax(-1)
        cm += confusion_matrix(masks, pred, k)
        loss, pixels = masked_nll(logp, masks)
        nll, count = nll + loss, count + pixels
        for img, p in zip(images, pred.astype(np.uint8)) if save_dir is not None else ():
            stem = Path(save_dir) / f"{split}{index:04d}"
            save_mask_and_overlay(img, p, Path(f"{stem}_mask.png"), Path(f"{stem}_overlay.png"))
            index += 1
    report = {**segmentation_report(cm, source.class_names), "val_loss": nll / max(count, 1)}
    return report, cm
