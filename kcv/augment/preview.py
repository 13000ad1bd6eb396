"""``kcv augment-preview``: a grid PNG of samples before and after a policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kcv import runs
from kcv.contracts import IGNORE_LABEL
from kcv.errors import KcvError

TASKS = ("classification", "segmentation")
# class colours for masks (index 0 = background); the ignore label is grey
PALETTE = np.array([[20, 20, 20], [230, 60, 60], [60, 200, 80], [70, 110, 240], [240, 200, 40],
                    [200, 80, 220], [60, 210, 220], [250, 140, 40]], np.uint8)
IGNORE_COLOUR = np.array([150, 150, 150], np.uint8)
MAX_PREVIEW_SIZE = 2048  # a grid cell larger than a screen shows nothing more


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` picture of a class-index mask (255 = ignore in grey)."""
    out = PALETTE[np.where(mask == IGNORE_LABEL, 0, mask) % len(PALETTE)]
    out[mask == IGNORE_LABEL] = IGNORE_COLOUR
    return out


def augment_samples(policy, task: str, images: np.ndarray, targets: np.ndarray, num_classes: int,
                    seed: int = 0):
    """Apply ``policy`` once to a batch, as the training pipeline does (epoch 0, batch ``seed``)."""
    import tensorflow as tf

    from kcv.augment import Augmenter

    aug = Augmenter(policy, task, num_classes)
    x, y = aug(tf.constant(images, tf.float32), tf.constant(targets, tf.int32),
               tf.constant([seed, 0], tf.int64))
    return aug, np.asarray(x), np.asarray(y)


def preview(policy=None, task: str = "segmentation", data: str = "shapes", img_size: int = 96,
            samples: int = 6, seed: int = 0, out="augment_preview.png") -> Path:
    """Write the preview grid to ``out`` (atomically) and return its path.

    Rows: original images, (original masks,) augmented images, (augmented masks). For
    classification the titles give the label, or the two largest label weights when the
    policy mixes samples.
    """
    from kcv.augment import default_policy, parse_policy
    from kcv.data.pipeline import load_data

    if task not in TASKS:
        raise KcvError(f"--task '{task}': choose one of {', '.join(TASKS)}")
    if not 1 <= samples <= 32:
        raise KcvError(f"--samples {samples}: must be between 1 and 32")
    if not 16 <= img_size <= MAX_PREVIEW_SIZE:
        raise KcvError(f"--img-size {img_size}: must be between 16 and {MAX_PREVIEW_SIZE} for a preview")
    if not str(out).lower().endswith(".png"):
        raise KcvError(f"--out {out}: must be a .png file")
    policy = parse_policy(default_policy(task) if policy is None else policy, task)
    source = load_data(data, task, img_size)
    images, targets = source.arrays("train", limit=samples)
    aug, x, y = augment_samples(policy, task, images, targets, source.num_classes, seed)
    rows = [("original", images)]
    if task == "segmentation":
        rows += [("mask", targets), ("augmented", x), ("augmented mask", y)]
    else:
        rows += [("augmented", x)]
    return _draw(rows, targets, y, source.class_names, aug.soft_labels, out, f"--augment {policy}")


def _draw(rows, labels, new_labels, class_names, soft, out, title) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.8 * n, 1.9 * len(rows)), squeeze=False)
    for r, (name, arr) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            pic = colour_mask(arr[c]) if arr[c].ndim == 2 else np.clip(arr[c], 0, 255).astype(np.uint8)
            ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if labels.ndim == 1:  # classification: say what the label is
                ax.set_title(_label_text(labels[c] if r == 0 else new_labels[c], class_names, soft and r),
                             fontsize=7)
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with runs.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(out)


def _label_text(label, class_names, soft) -> str:
    if not soft:
        return class_names[int(label)]
    top = np.argsort(-label)[:2]
    return " ".join(f"{class_names[i]} {label[i]:.2f}" for i in top if label[i] > 0.005)
