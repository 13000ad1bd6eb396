"""The one matplotlib style of every kcv picture (curves, confusion matrix, comparison chart,
receptive-field drawing), and the one way they are saved.

Everything drawn by kcv is drawn inside ``with style() as plt:`` and written by :func:`save`,
so the pictures share fonts, colours, grid and resolution, and each is written atomically
(temporary name in the same folder, then rename). ``save`` stamps the PNG with a ``kcv-style`` text chunk naming
:data:`STYLE_VERSION`, which lets tests check that a picture was drawn in this style.

The colour cycle is Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008):
train/validation pairs and bubbles stay distinguishable for the ~8 % of men with a red–green
deficiency, which the default tab10 does not guarantee.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from kcv import runs

STYLE_VERSION = "kcv-1"
STYLE_KEY = "kcv-style"
DPI = 100

# Okabe–Ito, without its black (kept for text) and yellow (too light on white)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
SEQUENTIAL_CMAP = "Blues"  # confusion matrices: one hue, light = low
HEATMAP_CMAP = "jet"  # Grad-CAM overlays: the paper's and every tool's convention

RC = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
    "image.cmap": SEQUENTIAL_CMAP,
}


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def style():
    """Context in which matplotlib draws with kcv's style (rcParams restored on exit)."""
    plt = pyplot()
    from cycler import cycler

    with plt.rc_context({**RC, "axes.prop_cycle": cycler(color=PALETTE)}):
        yield plt


def save(fig, path, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` (PNG) atomically, stamped with the style version, and close it."""
    plt = pyplot()
    try:
        with runs.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", metadata={STYLE_KEY: STYLE_VERSION})
    finally:
        plt.close(fig)
    return Path(path)


def style_of(path) -> str | None:
    """The ``kcv-style`` stamp of a PNG written by :func:`save` (``None`` if absent)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.info.get(STYLE_KEY)
