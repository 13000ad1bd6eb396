"""Loss and metric curves (``curves.png``)."""

from __future__ import annotations

from pathlib import Path

from kcv import runs


def plot_curves(rows: list[dict], path, title: str = "") -> Path:
    """Plot loss and the main metric per epoch, train vs validation, to ``path`` (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    metrics = [k for k in ("miou", "pixel_accuracy", "accuracy") if any(k in r for r in rows)][:1]
    panels = ["loss"] + metrics
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for prefix, style in (("", "-"), ("val_", "--")):
            ys = [r.get(prefix + key) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, style, marker="o", ms=3, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with runs.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)
