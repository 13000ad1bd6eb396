"""``kcv train --class-weights w1,w2,...|auto``: per-class loss weights.

``auto`` weighs each class by its inverse frequency in the training targets (pixels of the
training masks for segmentation, labels for classification; label 255 ignored), normalised
as scikit-learn's ``compute_class_weight("balanced")``:

    w_c = N / (C · n_c)

with ``n_c`` the count of class ``c``, ``N = Σ n_c`` and ``C`` the number of classes, so that
the weights average to 1 over the training pixels (Σ_c n_c·w_c = N) and a balanced data set
gets all ones. A class absent from the training data gets weight 1 (it never contributes).
On ``shapes`` (80 % background) this gives background 0.31 and the shapes 2.5–6.1.

The weights go to :func:`kcv.losses.get_loss` (CE and focal: per-pixel weights, normalised by
their sum; Dice: a weighted mean of the per-class Dice terms).
"""

from __future__ import annotations

import numpy as np

from kcv.errors import KcvError
from kcv.contracts import IGNORE_LABEL

FLAG = "--class-weights"


def parse_class_weights(value) -> str | list[float] | None:
    """``None``, ``"auto"`` or a list of non-negative floats from the flag's text."""
    if value is None or isinstance(value, list):
        return value
    text = str(value).strip()
    if text == "auto":
        return "auto"
    try:
        weights = [float(v) for v in text.split(",")]
    except ValueError:
        raise KcvError(f"{FLAG} '{value}': expected comma-separated numbers (e.g. 0.3,1,1,1) or 'auto'") from None
    if any(not np.isfinite(w) or w < 0 for w in weights) or not any(weights):
        raise KcvError(f"{FLAG} '{value}': weights must be finite, >= 0 and not all zero")
    return weights


def count_classes(targets, num_classes: int) -> np.ndarray:
    """Occurrences of each class in an iterable of target arrays (255 ignored)."""
    counts = np.zeros(num_classes, np.int64)
    for t in targets:
        t = np.asarray(t).ravel().astype(np.int64)
        counts += np.bincount(t[t != IGNORE_LABEL], minlength=num_classes)[:num_classes]
    return counts


def inverse_frequency(counts: np.ndarray) -> list[float]:
    """``w_c = N / (C · n_c)`` (see the module docstring); 1 for absent classes."""
    counts = np.asarray(counts, np.float64)
    n, c = counts.sum(), len(counts)
    weights = np.where(counts > 0, n / (c * np.maximum(counts, 1)), 1.0)
    return [round(float(w), 6) for w in weights]


def resolve_class_weights(value, source) -> list[float] | None:
    """The weights for ``--class-weights value`` on a loaded data source, checked against its
    number of classes; ``auto`` counts the training targets."""
    value = parse_class_weights(value)
    if value is None:
        return None
    names = source.class_names
    if value == "auto":
        # targets only (masks without their images); one by one where sizes differ (--crop)
        ds = source.targets("train")
        targets = ds.as_numpy_iterator() if source.crop else ds.batch(64).as_numpy_iterator()
        return inverse_frequency(count_classes(targets, len(names)))
    if len(value) != len(names):
        raise KcvError(f"{FLAG}: {len(value)} weight(s) for {len(names)} classes ({', '.join(names)})")
    return value
