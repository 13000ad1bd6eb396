"""Static analysis of a built model: parameters and multiply–accumulates per layer."""

from __future__ import annotations

import math

import keras
from keras import layers


def _hw(shape):
    return math.prod(d for d in shape[1:-1] if d is not None)


def layer_macs(layer) -> int:
    """Multiply–accumulates of one call of ``layer`` (0 for layers without weights' maths)."""
    try:
        in_shape, out_shape = layer.input.shape, layer.output.shape
    except (AttributeError, ValueError):
        return 0
    if isinstance(in_shape, (list, tuple)) and in_shape and isinstance(in_shape[0], (list, tuple)):
        in_shape = in_shape[0]
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


def registry_table(task: str | None = None) -> str:
    """``kcv models``: name, task, family, params and GMACs at 224×224 for each architecture."""
    from kcv.registry import create_model, get_spec, list_models

    rows = []
    for name in list_models(task):
        spec = get_spec(name)
        n_cls = 1000 if spec.task == "classification" else 21
        model = create_model(name, n_cls, (224, 224, 3))
        rows.append((name, spec.task, spec.family, model.count_params(), count_macs(model) / 1e9))
        keras.backend.clear_session()
    head = f"{'name':<18} {'task':<15} {'family':<13} {'params':>13} {'GFLOPs@224':>11}"
    lines = [head, "-" * len(head)]
    lines += [f"{n:<18} {t:<15} {f:<13} {p:>13,} {g:>11.2f}" for n, t, f, p, g in rows]
    return "\n".join(lines)
