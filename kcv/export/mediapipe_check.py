"""A real on-device consumer: MediaPipe Tasks (``ImageClassifier``, ``ImageSegmenter``)
loading a ``.tflite`` file through its TFLite Metadata, compared with LiteRT on the same
file (``kcv export --check mediapipe``, and the export tests).

MediaPipe does its own preprocessing from the metadata (normalisation, uint8 or float
input) and its own postprocessing (labels, top-k, category mask), so agreement with kcv's
LiteRT run of the same file shows that the metadata describes what the model expects.
Images are fed at the model's input size, so MediaPipe's resize is the identity.

A MediaPipe class counts as agreeing when LiteRT gives it the highest probability, ties
included: int8 files output probabilities in steps of 1/256, and two classes at the same
step are an exact tie that MediaPipe and ``numpy.argmax`` may break differently.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kcv.errors import KcvError

MIN_AGREEMENT = 0.99  # top-1 of images / category of pixels


def _tasks():
    try:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError:
        raise KcvError("--check mediapipe needs the mediapipe package: pip install mediapipe") from None
    return mp, BaseOptions, vision


def _agree(probs: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Whether ``chosen`` (class per image or pixel) has the highest probability."""
    picked = np.take_along_axis(probs, chosen[..., None].astype(np.int64), axis=-1)[..., 0]
    return picked >= probs.max(-1)


def run_mediapipe(path, task: str, images: np.ndarray):
    """MediaPipe's answer per image: ``(classes, labels)`` for a classifier (top-1 index and
    category name), ``(masks, None)`` for a segmenter (category mask, ``[N, H, W]``)."""
    from kcv._quiet import silenced_fd2

    mp, BaseOptions, vision = _tasks()
    base = BaseOptions(model_asset_path=str(path))
    pixels = [mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img.astype(np.uint8)))
              for img in images]
    if task == "classification":
        opts = vision.ImageClassifierOptions(base_options=base, max_results=1)
        with silenced_fd2(), vision.ImageClassifier.create_from_options(opts) as clf:  # "Created XNNPACK delegate"
            tops = [clf.classify(p).classifications[0].categories[0] for p in pixels]
        return np.array([c.index for c in tops]), [c.category_name for c in tops]
    opts = vision.ImageSegmenterOptions(base_options=base, output_category_mask=True,
                                        output_confidence_masks=False)
    with silenced_fd2(), vision.ImageSegmenter.create_from_options(opts) as seg:
        masks = [seg.segment(p).category_mask.numpy_view().copy() for p in pixels]
    return np.stack(masks).reshape(len(images), *images.shape[1:3]), None


def check(path, task: str, images: np.ndarray, class_names, litert_probs: np.ndarray | None = None) -> dict:
    """Load ``path`` in MediaPipe Tasks and compare it with LiteRT on ``images``.

    Returns:
        ``{"agreement", "ties", "labels_ok", "ok"}`` (``error`` instead if MediaPipe refused
        the file); agreement is per image (classification) or per pixel (segmentation).
    """
    if litert_probs is None:
        from kcv.runtime.runners import open_runner

        litert_probs = open_runner(Path(path), "tflite")(images.astype(np.float32))
    try:
        chosen, labels = run_mediapipe(path, task, images)
    except KcvError:
        raise
    except Exception as e:  # MediaPipe raises RuntimeError/ValueError with its C++ status text
        return {"ok": False, "error": " ".join(str(e).split())[:300]}
    agree = _agree(litert_probs, chosen)
    ties = int((np.sum(litert_probs >= litert_probs.max(-1, keepdims=True), -1) > 1).sum())
    result = {"agreement": float(agree.mean()), "ties": ties, "images": int(len(images))}
    if labels is not None:
        result["labels_ok"] = all(label == class_names[i] for label, i in zip(labels, chosen))
    result["ok"] = result["agreement"] >= MIN_AGREEMENT and result.get("labels_ok", True)
    return result
