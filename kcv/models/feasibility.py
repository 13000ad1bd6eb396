"""Refuse sizes, depths and widths that cannot work, before anything is built.

``--img-size 100000`` or ``--model-arg depth=99`` used to fail minutes later with an
out-of-memory traceback. :func:`check_feasible` instead *plans* the model: it runs the
builder inside ``keras.StatelessScope(initialize_variables=False)``, where Keras creates
the layers and their symbolic shapes but allocates no weights, which takes 0.05-0.6 s even
for a model of 10^19 parameters. On that plan it applies two simple rules:

1. **No level below 1 px.** A layer with stride ``s`` (pooling, strided convolution) whose
   input is narrower than ``s`` pixels would make a level smaller than one pixel; Keras'
   ``same`` padding hides it by rounding up to 1 px, so the model "works" on nothing.
2. **Memory.** Training holds, in float32, the weights four times (weights, gradients,
   two Adam slots) and, per image of the batch, every layer's output twice (the
   activation kept for the backward pass and its gradient):
   ``bytes = 4 * (4 * params + 2 * batch * activations)``. A run whose plan exceeds the
   machine's memory (physical RAM, or the cgroup limit if lower) cannot run and is
   refused. The rule is a lower bound of what TensorFlow needs, so it never refuses a run
   that would fit; an accelerator's memory is not queried (TensorFlow cannot report it
   before allocating), the host's bounds it.

A refusal says what would fit: the largest ``--img-size`` or ``--model-arg`` value that
passes both rules, found by bisection over plans.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from kcv import compat
from kcv.errors import KcvError

BYTES = 4  # float32


@dataclass
class Plan:
    params: int
    activations: int  # per image: sum of every layer's output elements
    too_small: str | None  # the first layer that would make a level below 1 px


def memory_limit() -> int:
    """Bytes of memory this process can use: physical RAM, or the cgroup limit if lower."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(f) as fh:
                limit = min(limit, int(fh.read().strip()))
        except (OSError, ValueError):  # absent, or "max"
            pass
    return limit


def training_bytes(plan: Plan, batch_size: int) -> int:
    """Rule 2 of the module docstring."""
    return BYTES * (4 * plan.params + 2 * batch_size * plan.activations)


def plan_model(arch: str, num_classes: int, img_size: int, model_args: dict) -> Plan:
    """Build ``arch`` symbolically (no weights allocated) and measure it.

    Raises:
        KcvError: the builder refused the arguments (named, with its reason).
    """
    import keras

    from kcv.registry import create_model

    try:
        with keras.StatelessScope(initialize_variables=False):
            model = create_model(arch, num_classes, (img_size, img_size, 3), **model_args)
    except KcvError:
        raise
    except Exception as e:  # the builder's own checks (ValueError, ...) on these arguments
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise KcvError(f"{arch} cannot be built at --img-size {img_size}{_args_text(model_args)}: "
                       f"{type(e).__name__}: {first}") from e
    finally:
        # The planned variables wait in a Keras-global list to be initialised at the next
        # exit of a stateless scope; they must never be.
        compat.forget_unallocated_variables()
    params = sum(math.prod(v.shape) for v in model.weights)
    layers = list(_leaf_layers(model))
    return Plan(params, sum(_output_elements(layer) for layer in layers),
                next((layer.name for layer in layers if _below_one_pixel(layer)), None))


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model (backbone)
            yield from _leaf_layers(layer)
        else:
            yield layer


def _shapes(tensors):
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return [tuple(t.shape) for t in tensors if hasattr(t, "shape")]


def _output_elements(layer) -> int:
    try:
        shapes = _shapes(layer.output)
    except (AttributeError, ValueError):  # a layer called more than once
        return 0
    return sum(math.prod(d or 1 for d in shape[1:]) for shape in shapes)


def _below_one_pixel(layer) -> bool:
    if "Transpose" in type(layer).__name__:  # a transposed convolution's stride upsamples
        return False
    strides = getattr(layer, "strides", None)
    if not strides or isinstance(strides, int):
        strides = (strides,) * 2 if strides else ()
    try:
        shape = _shapes(layer.input)[0]
    except (AttributeError, ValueError, IndexError):
        return False
    if len(shape) != 4 or len(strides) != 2:
        return False
    return any(size is not None and s > 1 and size < s for size, s in zip(shape[1:3], strides))


def _args_text(model_args: dict) -> str:
    return "".join(f" --model-arg {k}={v}" for k, v in model_args.items())


def building_bytes(plan: Plan, gradient: bool = False) -> int:
    """What building a model for inspection (``kcv info``) holds at least: its weights, once;
    with ``gradient`` (``--draw``'s effective field, one image), every layer's output and its
    gradient too."""
    return BYTES * (plan.params + (2 * plan.activations if gradient else 0))


def _fits(arch, num_classes, img_size, batch_size, model_args, limit, need=training_bytes) -> bool:
    try:
        plan = plan_model(arch, num_classes, img_size, model_args)
    except KcvError:
        return False
    return plan.too_small is None and need(plan, batch_size) <= limit


def _largest(ok, low: int, high: int, step: int = 1) -> int | None:
    """The largest ``v`` in ``[low, high]`` (a multiple of ``step`` above ``low``) with
    ``ok(v)``, assuming ``ok`` holds below it. Doubling from ``low`` first, so that the
    plans tried stay small (a plan's cost grows with the model)."""
    if low > high or not ok(low):
        return None
    v = low
    while v * 2 <= high and ok(v * 2):
        v *= 2
    lo, hi = v // step, min(2 * v - 1, high) // step  # ok(lo * step), unknown up to hi * step
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid * step) else (lo, mid - 1)
    return max(lo * step, low)


def check_feasible(arch: str, num_classes: int, img_size: int, batch_size: int, model_args: dict,
                   limit: int | None = None) -> Plan:
    """Refuse (:class:`KcvError`) a model that cannot be built or trained here; see the module doc.

    Args:
        limit: memory in bytes (default :func:`memory_limit`).
    """
    limit = memory_limit() if limit is None else limit
    plan, setting = _planned(arch, num_classes, img_size, model_args,
                             lambda: _suggestion(arch, num_classes, img_size, batch_size, model_args, limit))
    need = training_bytes(plan, batch_size)
    if need > limit:
        what = (f"{setting}: training {arch} at batch {batch_size} needs about {_gb(need)} "
                f"({plan.params:,} parameters, {plan.activations:,} activations per image), "
                f"more than the {_gb(limit)} of memory here")
        raise KcvError(what + _suggestion(arch, num_classes, img_size, batch_size, model_args, limit))
    return plan


def check_buildable(arch: str, num_classes: int, img_size: int, model_args: dict, gradient: bool = False,
                    limit: int | None = None) -> Plan:
    """Refuse (:class:`KcvError`) a model that cannot even be built here, before building it:
    what ``kcv info`` does. Rule 1 of the module docstring, and :func:`building_bytes` for
    memory (a model is described from its shapes, so ``resnet50`` at 100,000 px, whose
    weights fit, is not refused; ``lenet5`` there, 6.3e12 weights, is).

    Args:
        gradient: also one image's activations and gradients (``kcv info --draw``).
        limit: memory in bytes (default :func:`memory_limit`).
    """
    limit = memory_limit() if limit is None else limit
    need = lambda plan, _batch: building_bytes(plan, gradient)  # noqa: E731
    hint = lambda: _suggestion(arch, num_classes, img_size, 1, model_args, limit, need)  # noqa: E731
    plan, setting = _planned(arch, num_classes, img_size, model_args, hint)
    if need(plan, 1) > limit:
        what = "its weights and one image's activations and gradients" if gradient else "its weights"
        raise KcvError(f"{setting}: {arch} needs about {_gb(need(plan, 1))} for {what} ({plan.params:,} "
                       f"parameters), more than the {_gb(limit)} of memory here{hint()}")
    return plan


def _planned(arch: str, num_classes: int, img_size: int, model_args: dict, hint) -> tuple[Plan, str]:
    """``(plan, "--img-size N --model-arg ...")``; refuses what the builder rejects and a level
    under 1 px, each message ending with ``hint()`` (what would fit)."""
    try:
        plan = plan_model(arch, num_classes, img_size, model_args)
    except KcvError as e:
        raise KcvError(f"{e}{hint()}") from e
    setting = f"--img-size {img_size}{_args_text(model_args)}"
    if plan.too_small is not None:
        raise KcvError(f"{setting}: {arch}'s layer {plan.too_small} would make a level smaller than 1 px{hint()}")
    return plan, setting


def _suggestion(arch, num_classes, img_size, batch_size, model_args, limit, need=training_bytes) -> str:
    """``; ... would fit`` naming the largest img size or model-arg value that passes."""
    from kcv.registry import get_spec

    fits = lambda size, args: _fits(arch, num_classes, size, batch_size, args, limit, need)  # noqa: E731
    hints = []
    for key, value in model_args.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            best = _largest(lambda v: fits(img_size, {**model_args, key: v}), 1, value - 1)
            if best is not None:
                hints.append(f"--model-arg {key}={best}")
    min_size = get_spec(arch).min_size
    if img_size > min_size and not hints:
        best = _largest(lambda s: fits(s, model_args), min_size, img_size - 1, step=8)
        if best is not None:
            hints.append(f"--img-size {best}")
    if not hints and batch_size > 1:
        best = _largest(lambda b: _fits(arch, num_classes, img_size, b, model_args, limit, need), 1, batch_size - 1)
        if best is not None:
            hints.append(f"--batch-size {best}")
    return f"; at most {' or '.join(hints)} would fit" if hints else ""


def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GB" if n < 2**50 else f"{n / 2**30:.2e} GB"
