"""``kcv info ARCH --draw``: the receptive field of one output unit, drawn on the input.

The picture has two panels. Left, an input-sized canvas with

* the *theoretical* receptive field of the chosen unit as a square
  (:mod:`kcv.models.analysis`: kernel, stride and dilation grown layer by layer, Araujo et al.,
  Distill 2019), dashed where it runs past the image border (the padding);
* the grid of the feature map (one cell per unit, ``jump`` pixels apart) and the unit's cell;
* the *effective* receptive field under it as a heat map: ``|∂ unit / ∂ input|`` of the untrained
  model on a random image (Luo et al., "Understanding the Effective Receptive Field in Deep
  Convolutional Neural Networks", NeurIPS 2016) — a Gaussian-like blob much smaller than the
  square, which is why a big theoretical field does not mean the unit *uses* all of it.

Right, the numbers: layer, map size, unit, field size, jump, the share of the image it
covers, parameters and MACs.

The unit's centre is placed at ``(i + ½)·H/h`` input pixels, the cell centres of a map that
tiles the input evenly — exact for "same"-padded networks, within a few pixels for "valid" ones
(AlexNet).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from kcv.errors import KcvError
from kcv.models import analysis

DECADES = 2  # the effective field is drawn down to 1/100 of its peak gradient


def parse_unit(text: str | None):
    """``"ROW,COL"`` → ``(row, col)``; ``None`` stays ``None`` (the centre unit)."""
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise KcvError(f"--unit {text}: expected ROW,COL of the feature map, e.g. 3,3")
    return int(parts[0]), int(parts[1])


def _target(model: keras.Model, layer: str | None):
    """``(tensor, layer name)`` whose unit is drawn: ``layer``'s output or the last feature map."""
    if layer is None:
        return analysis.last_feature_map(model)
    try:
        found = model.get_layer(layer)
    except ValueError:
        raise KcvError(f"--layer {layer}: no such layer in {model.name} (`kcv info` lists them)") from None
    out = found.output
    if isinstance(out, (list, tuple)) or len(out.shape) != 4:
        raise KcvError(f"--layer {layer}: its output is not a feature map (batch, height, width, channels)")
    return out, found.name


def unit_field(model: keras.Model, unit=None, layer: str | None = None) -> dict:
    """Where the receptive field of one unit lies on the input.

    Returns:
        dict with ``layer``, ``map`` (h, w), ``unit`` (row, col), ``rf`` (:class:`~kcv.models.analysis.RF`),
        ``centre`` (y, x) and ``box`` (top, left, bottom, right) in input pixels (may exceed the image).
    """
    tensor, name = _target(model, layer)
    rf = analysis.propagate_rf(model)[id(tensor)]
    height, width = model.inputs[0].shape[1:3]
    h, w = tensor.shape[1:3]
    row, col = unit if unit is not None else (h // 2, w // 2)
    if not (0 <= row < h and 0 <= col < w):
        raise KcvError(f"--unit {row},{col}: outside the {h}×{w} map of {name} (rows 0..{h - 1}, cols 0..{w - 1})")
    cy, cx = (row + 0.5) * height / h, (col + 0.5) * width / w
    sy, sx = rf.size
    box = (cy - sy / 2, cx - sx / 2, cy + sy / 2, cx + sx / 2)
    return {"layer": name, "tensor": tensor, "map": (h, w), "unit": (row, col), "rf": rf,
            "centre": (cy, cx), "box": box}


def effective_field(model: keras.Model, tensor, unit, seed: int = 0) -> np.ndarray:
    """``|∂ Σ_channels unit / ∂ input|`` summed over colour channels, ``[H, W]`` in [0, 1].

    The model runs in training mode: an untrained network's BatchNorm moving statistics are
    placeholders (mean 0, variance 1), and through 50 layers they let one path dominate (a
    ResNet-50 unit then has a gradient at 0.7 % of the pixels); batch statistics give the
    Gaussian-like field Luo et al. describe. Returned on a log scale: 1 at the peak, 0 at
    ``10**-DECADES`` of it and below.
    """
    import tensorflow as tf

    probe = keras.Model(model.inputs[0], tensor)
    height, width = model.inputs[0].shape[1:3]
    x = tf.convert_to_tensor(np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.cast(probe(x, training=True), tf.float32)
        score = tf.reduce_sum(out[0, unit[0], unit[1], :])
    grad = tf.reduce_sum(tf.abs(tape.gradient(score, x)), axis=-1, keepdims=True)
    # a k×k box filter (k ≈ H/56) averages out the random image's pixel noise: the envelope
    # is what matters, and a noisy PNG is several times larger
    grad = tf.nn.avg_pool2d(grad, max(1, round(height / 56)), 1, "SAME").numpy()[0, ..., 0]
    peak = grad.max()
    if peak <= 0:
        return grad
    # Log scale over DECADES decades: the field's envelope spans orders of magnitude, and
    # strided 1×1 shortcuts (ResNet) put a few hot pixels on a grid that a linear scale
    # would show alone.
    logs = np.log10(np.maximum(grad / peak, 10.0 ** -DECADES))
    return (logs + DECADES) / DECADES


def _numbers(arch, model, field) -> list[str]:
    rf = field["rf"]
    height, width = model.inputs[0].shape[1:3]
    top, left, bottom, right = field["box"]
    inside = (max(0, min(bottom, height) - max(top, 0)) * max(0, min(right, width) - max(left, 0)))
    jump = "×".join(dict.fromkeys(analysis._fmt(j) for j in rf.jump))
    lines = [arch, f"input {height}×{width}", "",
             f"layer {field['layer']}", f"map {field['map'][0]}×{field['map'][1]}",
             f"unit (row {field['unit'][0]}, col {field['unit'][1]})", "",
             f"receptive field {analysis.RF(rf.size, rf.jump).text()} px",
             f"jump (stride) {jump} px",
             f"centre (y {field['centre'][0]:.1f}, x {field['centre'][1]:.1f})",
             f"covers {100 * inside / (height * width):.0f}% of the image"]
    if rf.global_context:
        lines.append("+ global context (global pooling / SE)")
    macs = analysis.count_macs(model)
    lines += ["", f"params {model.count_params():,}", f"MACs {macs:,}", f"  ({macs / 1e9:.3f} GFLOPs)"]
    return lines


def draw_receptive_field(arch: str, model: keras.Model, path, unit=None, layer: str | None = None) -> Path:
    """Draw one unit's receptive field on an input-sized canvas beside its numbers (atomic PNG)."""
    from matplotlib.patches import Rectangle

    from kcv.viz import style

    field = unit_field(model, unit, layer)
    erf = effective_field(model, field["tensor"], field["unit"])
    height, width = model.inputs[0].shape[1:3]
    (h, w), (top, left, bottom, right) = field["map"], field["box"]
    with style.style() as plt:
        fig, (ax, text) = plt.subplots(1, 2, figsize=(8.4, 4.4), gridspec_kw={"width_ratios": [1.15, 1]})
        ax.grid(False)
        ax.imshow(erf, cmap="Greys", vmin=0, vmax=1, extent=(0, width, height, 0))
        for y in np.arange(1, h) * height / h:
            ax.axhline(y, color=style.PALETTE[5], lw=0.4, alpha=0.6)
        for x in np.arange(1, w) * width / w:
            ax.axvline(x, color=style.PALETTE[5], lw=0.4, alpha=0.6)
        r, c = field["unit"]
        ax.add_patch(Rectangle((c * width / w, r * height / h), width / w, height / h, fill=False,
                               ec=style.PALETTE[1], lw=2.5, label="the unit's cell"))
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, ls="--",
                               ec=style.PALETTE[3], lw=1.5, clip_on=False))
        ax.add_patch(Rectangle((max(left, 0), max(top, 0)), min(right, width) - max(left, 0),
                               min(bottom, height) - max(top, 0), fill=False, ec=style.PALETTE[3],
                               lw=2.5, label="theoretical receptive field"))
        ax.plot([], [], "s", color="0.35", label="effective field |∂unit/∂input| (untrained, log scale, smoothed)")
        pad = max(0.0, -top, -left, bottom - height, right - width)
        ax.set_xlim(-pad - 2, width + pad + 2)
        ax.set_ylim(height + pad + 2, -pad - 2)
        ax.add_patch(Rectangle((0, 0), width, height, fill=False, ec="black", lw=1))
        ax.set_title(f"{arch}: one unit of {field['layer']}", fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=1, fontsize=8)
        text.axis("off")
        text.text(0.0, 1.0, "\n".join(_numbers(arch, model, field)), va="top", family="monospace", fontsize=9)
        fig.tight_layout()
    return style.save(fig, path)


def info_with_drawing(arch: str, img_size: int = 224, num_classes: int | None = None,
                      model_args: dict | None = None, show_layers: bool = True, draw=None,
                      unit=None, layer: str | None = None) -> tuple[str, Path | None]:
    """``kcv info [--draw PNG]``: the text report, and the drawing when ``draw`` is a path.

    The model is built once for both. Returns ``(report, drawing path or None)``.
    """
    if draw is None and (unit is not None or layer is not None):
        raise KcvError("--unit and --layer choose what --draw draws; add --draw")
    if draw is not None and Path(draw).suffix.lower() != ".png":
        raise KcvError(f"--out {draw}: the drawing is a PNG; name a .png file")
    model = analysis.build_for_info(arch, img_size, num_classes, model_args, gradient=draw is not None)
    report = analysis.info_report(arch, img_size, num_classes, model_args, show_layers, model=model)
    drawn = draw_receptive_field(arch, model, draw, unit, layer) if draw is not None else None
    return report, drawn
