"""Static analysis of a built model: parameters, multiply–accumulates and receptive fields.

MACs follow the papers' and torchvision's convention ("GFLOPs" = 10⁹ multiply–accumulates):
only convolutions and fully connected layers count; BN, activations, additions and pooling are
free. Receptive fields are the theoretical, padding-independent ones, grown layer by layer
along every path of the graph (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019):

    r_out = r_in + (k_eff − 1) · j_in,   j_out = j_in · s,   k_eff = d · (k − 1) + 1

with ``r`` the receptive field and ``j`` the jump (distance in input pixels between adjacent
outputs). Hence a K×K stride-1 conv followed by a P×P pool sees (P + K − 1)×(P + K − 1) pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

from kcv import compat
from kcv.contracts import main_output
from kcv.layers.deformable import DeformableConv2D


def _hw(shape):
    return math.prod(d for d in shape[1:-1] if d is not None)


def layer_macs(layer) -> int:
    """Multiply–accumulates of one call of ``layer`` on one image (0 for layers without MAC maths)."""
    try:
        in_shape, out_shape = layer.input.shape, layer.output.shape
    except (AttributeError, ValueError):
        return 0
    if isinstance(in_shape, (list, tuple)) and in_shape and isinstance(in_shape[0], (list, tuple)):
        in_shape = in_shape[0]
    if isinstance(layer, DeformableConv2D):
        # main conv + offset/mask conv (3·K² outputs) + sampling: 4 bilinear taps and 1 mask
        # multiply per sampled value
        kk = layer.kernel_size[0] * layer.kernel_size[1]
        cin = in_shape[-1]
        return _hw(out_shape) * kk * cin * (layer.filters + 3 * kk + 5)
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        cin = in_shape[-1]
        return _hw(out_shape) * cin * layer.depth_multiplier * (kh * kw + out_shape[-1])
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return _hw(out_shape) * out_shape[-1] * kh * kw
    if isinstance(layer, layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        return _hw(in_shape) * in_shape[-1] * kh * kw * out_shape[-1]
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        return _hw(out_shape) * out_shape[-1] * kh * kw * in_shape[-1] // layer.groups
    # A layer whose maths is none of the above counts its own (k-NN's distance matmul), so
    # that this module needs no model family.
    if callable(getattr(layer, "macs_per_image", None)):
        return int(layer.macs_per_image())
    if isinstance(layer, layers.Dense):
        return math.prod(d for d in out_shape[1:-1] if d is not None) * in_shape[-1] * out_shape[-1]
    return 0


def count_macs(model: keras.Model) -> int:
    """Total multiply–accumulates of one forward pass of one image (nested models included)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        else:
            total += layer_macs(layer)
    return total


# ---------------------------------------------------------------------------------------------
# Receptive field


@dataclass(frozen=True)
class RF:
    """Receptive field ``size`` (h, w) in input pixels, ``jump`` (h, w) between neighbouring
    outputs, and whether a global operation (global pooling, SE) feeds it."""

    size: tuple = (1, 1)
    jump: tuple = (1, 1)
    global_context: bool = False

    def text(self, square: bool = True) -> str:
        """``427×427`` (``427`` with ``square=False`` when h = w), ``+g`` for global context."""
        h, w = (_fmt(v) for v in self.size)
        out = h if h == w and not square else f"{h}×{w}"
        return out + ("+g" if self.global_context else "")


def _fmt(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _window(rf: RF, kernel, strides, dilation=(1, 1)) -> RF:
    """A K×K window of stride s and dilation d applied to a map with field ``rf``."""
    size = tuple(r + (d * (k - 1)) * j for r, k, d, j in zip(rf.size, kernel, dilation, rf.jump))
    return RF(size, tuple(j * s for j, s in zip(rf.jump, strides)), rf.global_context)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _spatial(shape):
    return shape is not None and len(shape) == 4


def layer_rf(layer, rf: RF, in_shape=None, out_shape=None) -> RF:
    """The receptive field after ``layer`` given the field ``rf`` of its (widest) input."""
    if isinstance(layer, DeformableConv2D):  # its nominal K×K grid; the offsets move it
        return _window(rf, layer.kernel_size, layer.strides, layer.dilation_rate)
    if isinstance(layer, layers.Conv2DTranspose):
        # each output reads ceil(K/s) neighbouring inputs; the grid becomes s times finer
        s, k = _pair(layer.strides), _pair(layer.kernel_size)
        size = tuple(r + (math.ceil(kk / ss) - 1) * j for r, kk, ss, j in zip(rf.size, k, s, rf.jump))
        return RF(size, tuple(j / ss for j, ss in zip(rf.jump, s)), rf.global_context)
    if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)):
        return _window(rf, _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate))
    if isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
        return _window(rf, _pair(layer.pool_size), _pair(layer.strides or layer.pool_size))
    if isinstance(layer, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
        # the whole image: it adds no *local* growth, only global context
        return RF(rf.size, rf.jump, True)
    if isinstance(layer, layers.UpSampling2D):
        s = _pair(layer.size)
        grow = 1 if layer.interpolation != "nearest" else 0  # bilinear mixes two neighbours
        size = tuple(r + grow * j for r, j in zip(rf.size, rf.jump))
        return RF(size, tuple(j / ss for j, ss in zip(rf.jump, s)), rf.global_context)
    # Anything else is pointwise in space; a size change (resize, custom layers) rescales the jump.
    if _spatial(in_shape) and _spatial(out_shape):
        ratios = [i / o if i and o else 1 for i, o in zip(in_shape[1:3], out_shape[1:3])]
        return RF(rf.size, tuple(j * r for j, r in zip(rf.jump, ratios)), rf.global_context)
    return rf


def _merge(fields):
    """Several inputs (Add, Concatenate, Multiply): the widest field, global if any is."""
    fields = [f for f in fields if f is not None]
    if not fields:
        return None
    size = tuple(max(f.size[i] for f in fields) for i in range(2))
    jump = tuple(max(f.jump[i] for f in fields) for i in range(2))
    return RF(size, jump, any(f.global_context for f in fields))


def propagate_rf(model: keras.Model, inputs: list | None = None) -> dict:
    """Receptive field of every tensor of a functional ``model``: ``{id(tensor): RF}``.

    Walks the operations in topological order; nested models are entered with their inputs'
    fields. ``inputs`` gives the fields of ``model.inputs`` (default: one pixel, jump 1).
    """
    fields = {}
    for tensor, rf in zip(model.inputs, inputs or [RF()] * len(model.inputs)):
        fields[id(tensor)] = rf
    for op in model.operations:
        for call in compat.calls(op):
            ins = [fields.get(id(t)) for t in call.inputs]
            if not call.inputs or any(f is None for f in ins):
                continue  # an input layer, or a call from another graph
            if isinstance(op, keras.Model) and hasattr(op, "operations"):
                inner = propagate_rf(op, ins)
                outs = [inner.get(id(t), _merge(ins)) for t in op.outputs]
            else:
                out = layer_rf(op, _merge(ins), call.inputs[0].shape, call.outputs[0].shape)
                outs = [out] * len(call.outputs)
            for t, rf in zip(call.outputs, outs):
                fields[id(t)] = rf
    return fields


def last_feature_map(model: keras.Model):
    """The last spatial (rank-4) tensor on the path to the first output, and its layer name."""
    for t, call in compat.walk_up([main_output(model)], first_input=True):
        op = call.layer
        if _spatial(t.shape) and not (t.shape[1] == 1 and t.shape[2] == 1 and _is_global(op)):
            return t, op.name
        if not call.inputs:
            return t, op.name


def _is_global(op):
    return isinstance(op, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D))


def receptive_field(model: keras.Model) -> tuple[RF, str]:
    """``(RF, layer name)`` of the last feature map of ``model``."""
    fields = propagate_rf(model)
    t, name = last_feature_map(model)
    return fields[id(t)], name


# ---------------------------------------------------------------------------------------------
# kcv info


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape[1:]) + ")"


def layer_rows(model: keras.Model, fields: dict | None = None, prefix: str = "") -> list[tuple]:
    """``(name, type, output shape, params, MACs, RF)`` for each layer, nested models flattened."""
    fields = propagate_rf(model) if fields is None else fields
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "operations"):
            rows += layer_rows(layer, None, prefix=f"{prefix}{layer.name}/")
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError):
            out = None
        outs = out if isinstance(out, (list, tuple)) else [out]
        shape = _shape_text(outs[0].shape) if outs[0] is not None else "?"
        rf = fields.get(id(outs[0])) if outs[0] is not None else None
        rf_text = "" if rf is None or not _spatial(outs[0].shape) else rf.text(square=False)
        rows.append((prefix + layer.name, type(layer).__name__, shape, layer.count_params(),
                     layer_macs(layer), rf_text))
    return rows


def trainable_params(model) -> int:
    """The number of trainable weights (scalars) of ``model``."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def build_for_info(arch: str, img_size: int = 224, num_classes: int | None = None,
                   model_args: dict | None = None, gradient: bool = False) -> keras.Model:
    """The model ``kcv info`` describes: ``arch`` at ``img_size`` with ``num_classes``
    (default 1000 for classification, 21 for segmentation). Sizes and arguments that cannot
    be built here are refused first (:func:`kcv.models.feasibility.check_buildable`;
    ``gradient``: ``--draw`` will also back-propagate one image)."""
    from kcv.errors import KcvError
    from kcv.models.feasibility import check_buildable
    from kcv.registry import create_model, get_spec

    spec = get_spec(arch)
    if img_size < spec.min_size:
        raise KcvError(f"--img-size {img_size}: {arch} needs at least {spec.min_size} px")
    n_cls = num_classes or (1000 if spec.task == "classification" else 21)
    # unet depth=99 segfaulted inside Keras; lenet5 at 100,000 px asked for 25 TB of weights
    check_buildable(arch, n_cls, img_size, model_args or {}, gradient)
    return create_model(arch, n_cls, (img_size, img_size, 3), **(model_args or {}))


def info_report(arch: str, img_size: int = 224, num_classes: int | None = None,
                model_args: dict | None = None, show_layers: bool = True,
                model: keras.Model | None = None) -> str:
    """``kcv info``: the layer table, parameter and MAC totals, and the receptive field.

    ``model``: the already built :func:`build_for_info` model (saves building it twice).
    """
    from kcv.registry import get_spec

    spec = get_spec(arch)
    model = model if model is not None else build_for_info(arch, img_size, num_classes, model_args)
    n_cls = int(main_output(model).shape[-1])
    fields = propagate_rf(model)
    lines = [f"{arch} ({spec.task}, family {spec.family}) at {img_size}×{img_size}×3, "
             f"{n_cls} classes" + (f"; {spec.paper}" if spec.paper else "")]
    if show_layers:
        rows = layer_rows(model, fields)
        width = max(24, *(len(r[0]) for r in rows))
        head = f"{'layer':<{width}} {'type':<22} {'output':<18} {'params':>11} {'MACs':>14} {'RF':>10}"
        lines += ["", head, "-" * len(head)]
        lines += [f"{n:<{width}} {t:<22} {s:<18} {p:>11,} {m:>14,} {r:>10}".rstrip()
                  for n, t, s, p, m, r in rows]
        lines.append("")
    total, trainable = model.count_params(), trainable_params(model)
    macs = count_macs(model)
    t, name = last_feature_map(model)
    rf = fields[id(t)]
    jump = "×".join(dict.fromkeys(_fmt(j) for j in rf.jump))
    lines += [f"params          {total:,} ({trainable:,} trainable, {total - trainable:,} non-trainable)",
              f"MACs            {macs:,} ({macs / 1e9:.3f} GMACs = 'GFLOPs' as papers count them)",
              f"receptive field {RF(rf.size, rf.jump).text()} px at stride {jump} "
              f"(last feature map: {name}, {_shape_text(t.shape)})"]
    if rf.global_context:
        lines.append("                 plus global context: a global pooling (squeeze-and-excitation) "
                     "feeds it the whole image (+g in the table)")
    return "\n".join(lines)

