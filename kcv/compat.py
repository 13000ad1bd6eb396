"""Every use of Keras internals in kcv, behind small named functions.

kcv needs a few things Keras 3 has no public API for: the functional graph (which layer
call produced a tensor, from which inputs), a layer's own variables in saving order, the
global RNG state for resuming, the seed generators of preprocessing layers, two optimizer
hooks, and two workarounds for ``fit`` (multi-worker reduction, fused batch norm). Each is
one function here, and no other module touches a ``keras.src`` import or a private Keras
attribute (``tests/test_compat.py`` walks ``kcv/`` to hold that). A Keras release that
moves an internal therefore breaks this file only, and :func:`check` says so in one line.

:data:`CHECKED` names the versions this module was run against (kcv's tests: graph walks,
resume, augmentation, transfer, fused batch norm). Every function below calls
:func:`check` first and raises :class:`~kcv.errors.KcvError` outside that range;
``train()`` calls it before it writes anything. Not at import: ``import kcv`` must keep
working (loading a ``model.keras``, exporting a finished run use no internal), and an
error at import would escape the CLI's one-line handler. Internals are imported inside
the functions, after the check, so a moved module reads as the version message rather
than an ``ImportError``. ``KCV_SKIP_KERAS_CHECK=1`` runs on an unchecked version anyway.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from typing import Callable, Iterable, Iterator, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from kcv.errors import KcvError

# (oldest, newest) minor version each was run against, at its newest patch release. Keras
# 3.12 and 3.13 fail kcv's tests: no BatchNormalization.renorm (the fused BN path reads it),
# and RandAugment breaks on segmentation masks. TensorFlow 2.21 is the only one tried.
CHECKED = {"keras": ("3.14", "3.15"), "tensorflow": ("2.21", "2.21")}
SKIP_ENV = "KCV_SKIP_KERAS_CHECK"

# Captured at import, before any patch: the method patched_batchnorm_call() swaps out.
KERAS_BATCHNORM_CALL = keras.layers.BatchNormalization.call


# ------------------------------------------------------------------------------------------
# The version check


def _minor(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def pip_range(package: str) -> str:
    """The requirement that matches :data:`CHECKED` (``keras>=3.14,<3.16``)."""
    lo, hi = CHECKED[package]
    major, minor = _minor(hi)
    return f"{package}>={lo},<{major}.{minor + 1}"


def check() -> None:
    """Raise :class:`KcvError` unless Keras and TensorFlow are versions in :data:`CHECKED`."""
    if os.environ.get(SKIP_ENV, "0") not in ("", "0"):
        return
    problem = _problem(keras.__version__, tf.__version__)
    if problem:
        raise KcvError(problem)


@functools.lru_cache(maxsize=None)  # check() runs before every internal use
def _problem(keras_version: str, tf_version: str) -> str | None:
    for package, version in (("keras", keras_version), ("tensorflow", tf_version)):
        lo, hi = CHECKED[package]
        if not _minor(lo) <= _minor(version) <= _minor(hi):
            return (f"{package} {version} is not a version kcv was checked on ({lo} to {hi}): "
                    f"pip install '{pip_range(package)}', or set {SKIP_ENV}=1 to run anyway")
    return None


def _internal(fn):
    """Mark ``fn`` as using Keras internals: it checks the versions first."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        check()
        return fn(*args, **kwargs)
    return wrapper


# ------------------------------------------------------------------------------------------
# Layers and the functional graph


@_internal
def all_layers(layer, include_self: bool = True) -> list:
    """``layer`` and every layer nested in it, at any depth (sub-layers of RandAugment,
    layers of a nested backbone model)."""
    return list(layer._flatten_layers(include_self=include_self))


@_internal
def own_variables(layer) -> list:
    """A layer's own variables (not its sub-layers') in the order Keras saves them
    (``save_own_variables``): trainable, then non-trainable."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


class Call(NamedTuple):
    """One call of a layer in a functional graph (a Keras ``Node``)."""

    layer: object
    inputs: tuple  # KerasTensors; () for an input layer
    outputs: tuple


def _call(layer, node) -> Call:
    return Call(layer, tuple(node.input_tensors), tuple(node.outputs))


@_internal
def producer(tensor) -> Call:
    """The call that produced the symbolic ``tensor``."""
    layer, node_index, _ = tensor._keras_history
    return _call(layer, layer._inbound_nodes[node_index])


@_internal
def calls(layer, model=None) -> list[Call]:
    """Every call of ``layer``; with ``model``, only those that are part of ``model``'s graph
    (a layer shared with another model, such as the encoder of
    :func:`kcv.models.backbone.build_encoder`, also has calls in that one)."""
    from keras.src.ops.function import make_node_key

    own = getattr(model, "_nodes", None)  # None: no graph of its own (Sequential)
    return [_call(layer, node) for i, node in enumerate(layer._inbound_nodes)
            if own is None or make_node_key(layer, i) in own]


def walk_up(tensors: Iterable, *, first_input: bool = False,
            stop: Callable[[object, Call], bool] | None = None) -> Iterator[tuple[object, Call]]:
    """Depth-first from ``tensors`` towards the model inputs: ``(tensor, call that produced
    it)`` for each tensor reached, each once.

    Args:
        first_input: follow only each call's first input (the main path through a chain of
            pooling, flattening and dense layers).
        stop: ``stop(tensor, call)`` true: yield the pair but walk no further up from it.
    """
    stack, seen = list(tensors)[::-1], set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        call = producer(tensor)
        yield tensor, call
        if stop is None or not stop(tensor, call):
            stack.extend(reversed(call.inputs[:1] if first_input else call.inputs))


# ------------------------------------------------------------------------------------------
# Random number generators


@_internal
def global_rng_state() -> list:
    """The state of Keras' global seed generator (unseeded ``keras.random`` calls)."""
    from keras.src.random.seed_generator import global_seed_generator

    return np.asarray(global_seed_generator().state.value).tolist()


@_internal
def set_global_rng_state(state) -> None:
    from keras.src.random.seed_generator import global_seed_generator

    global_seed_generator().state.assign(state)


@_internal
def install_seed_generator(layer, generator) -> None:
    """Make ``layer`` and its sub-layers draw from ``generator`` (a ``keras.random.SeedGenerator``).

    Preprocessing layers keep their generator in ``generator`` and cache one per backend
    in ``_backend_generators``; the cache is emptied so that the new one is used.
    """
    for sub in all_layers(layer):
        if hasattr(sub, "generator"):
            # object.__setattr__: Keras' attribute tracking would try to track the swap.
            object.__setattr__(sub, "generator", generator)
        if hasattr(sub, "_backend_generators"):
            object.__setattr__(sub, "_backend_generators", {})


@_internal
def preprocessing_seed_generator(layer):
    """The seed generator a Keras preprocessing layer draws from on its current backend."""
    return layer._get_seed_generator(layer.backend._backend)


# ------------------------------------------------------------------------------------------
# Optimizers


class OptimizerHooks:
    """Mixin for a Keras optimizer class: public names for the private hooks kcv uses.

    Override :meth:`decays` to choose the variables Keras' own step applies weight decay
    to; :meth:`keras_decays` is Keras' rule (``weight_decay`` set, variable not excluded).
    """

    def decays(self, variable) -> bool:
        return self.keras_decays(variable)

    def keras_decays(self, variable) -> bool:
        check()
        return super()._use_weight_decay(variable)

    def _use_weight_decay(self, variable):  # the hook Keras' apply step asks
        return self.decays(variable)

    def variable_index(self, variable) -> int:
        """The index of ``variable`` in the list the optimizer was built with."""
        check()
        return self._get_variable_index(variable)


@_internal
def copy_weight_decay_exclusions(source, target) -> None:
    """What ``source.exclude_from_weight_decay()`` set (it is not in the optimizer's config)."""
    for attr in ("_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern"):
        if hasattr(source, attr):
            setattr(target, attr, getattr(source, attr))


# ------------------------------------------------------------------------------------------
# Workarounds for fit


@_internal
def build_for_fit(model, element_spec) -> None:
    """Build the compiled model's metrics and optimizer from ``element_spec``, and stop
    ``fit`` from building them again from a real batch (call inside the strategy scope)."""
    model._symbolic_build(data_batch=element_spec)
    model._maybe_symbolic_build = lambda *args, **kwargs: None


_REDUCE_PATCHED = False


@_internal
def patch_reduce_per_replica() -> None:
    """Reduce scalar step logs with ``axis=None`` under multi-worker (process-wide, once).

    Keras' ``reduce_per_replica`` calls ``strategy.reduce("MEAN", v, axis=0)`` on every
    log value, and the logs (loss, metric results) are scalars with no axis 0.
    """
    global _REDUCE_PATCHED
    if _REDUCE_PATCHED:
        return
    import keras.src.backend.tensorflow.trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    keras_tf_trainer.reduce_per_replica = reduce_per_replica
    _REDUCE_PATCHED = True


@contextlib.contextmanager
def patched_batchnorm_call(call):
    """``keras.layers.BatchNormalization.call`` is ``call`` while the block runs.

    Process-wide (``fit`` traces its step functions inside the block); Keras' method
    (:data:`KERAS_BATCHNORM_CALL`) is restored on exit, also after an error. Nested use
    with the same ``call`` leaves the outer block in charge.
    """
    check()
    if keras.layers.BatchNormalization.call is call:
        yield
        return
    keras.layers.BatchNormalization.call = call
    try:
        yield
    finally:
        keras.layers.BatchNormalization.call = KERAS_BATCHNORM_CALL


@_internal
def forget_unallocated_variables() -> None:
    """Drop the variables a ``keras.StatelessScope(initialize_variables=False)`` left waiting
    to be initialised at the next scope exit (:mod:`kcv.models.feasibility` plans models of
    any size that way and must never allocate them)."""
    from keras.src.backend.common import global_state

    global_state.set_global_attribute("uninitialized_variables", [])
