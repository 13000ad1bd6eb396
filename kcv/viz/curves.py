"""Loss and metric curves (``curves.png``), in kcv's shared style (:mod:`kcv.viz.style`)."""

from __future__ import annotations

from pathlib import Path

from kcv.viz import style

# train solid, validation dashed in the same colour: the pair reads as one quantity
_SPLITS = (("", "-", "train"), ("val_", "--", "val"))


def plot_curves(rows: list[dict], path, title: str = "") -> Path:
    """Plot loss and the main metric per epoch, train vs validation, to ``path`` (atomic).

    Args:
        rows: ``history.csv`` rows, each with ``epoch`` and metrics such as ``loss``,
            ``val_loss``, ``accuracy``/``miou``/``pixel_accuracy`` (``val_`` prefixed too).
        path: the PNG to write.
        title: figure title (the run's arch and data).
    """
    epochs = [r["epoch"] for r in rows]
    metrics = [k for k in ("miou", "pixel_accuracy", "accuracy") if any(k in r for r in rows)][:1]
    panels = ["loss"] + metrics
    with style.style() as plt:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
        for ax, key, colour in zip(axes[0], panels, style.PALETTE):
            for prefix, dash, label in _SPLITS:
                ys = [r.get(prefix + key) for r in rows]
                if any(y is not None for y in ys):
                    ax.plot(epochs, ys, dash, color=colour, marker="o", label=f"{label} {key}")
            best = _best(epochs, [r.get("val_" + key) for r in rows], lower=key == "loss")
            if best is not None:
                ax.plot(*best, "*", color="black", ms=10, label=f"best val {best[1]:.3f}")
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.legend()
            if len(epochs) <= 12:
                ax.set_xticks(epochs)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return style.save(fig, path)


def _best(epochs, values, lower: bool):
    """``(epoch, value)`` of the best validation value, or ``None`` without any."""
    scored = [(e, v) for e, v in zip(epochs, values) if isinstance(v, (int, float)) and v == v]
    if not scored:
        return None
    return (min if lower else max)(scored, key=lambda ev: ev[1])
