"""Confusion-matrix heat map (``confusion.png`` of ``kcv eval``), in kcv's shared style."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kcv.viz import style


def plot_confusion(cm, class_names, path, title: str = "", max_labels: int = 40) -> Path:
    """Plot a row-normalised confusion matrix (true class per row) to ``path`` (atomic).

    Cells show the fraction of the true class; with at most 12 classes the raw count too.
    Tick labels are dropped above ``max_labels`` classes, where they would overlap.
    """
    cm = np.asarray(cm, np.float64)
    k = len(class_names)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = min(2.6 + 0.45 * k, 16.0)
    with style.style() as plt:
        fig, ax = plt.subplots(figsize=(side + 1.2, side))
        ax.grid(False)  # a grid over a heat map hides the cells
        ax.spines[:].set_visible(True)  # and a matrix wants its full frame
        im = ax.imshow(frac, cmap=style.SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        if k <= max_labels:
            ax.set_xticks(range(k), class_names, rotation=45, ha="right")
            ax.set_yticks(range(k), class_names)
        if k <= 12:
            for t in range(k):
                for p in range(k):
                    colour = "white" if frac[t, p] > 0.5 else "black"
                    ax.text(p, t, f"{frac[t, p]:.2f}\n{int(cm[t, p])}", ha="center", va="center",
                            fontsize=8, color=colour)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        fig.tight_layout()
    return style.save(fig, path)
