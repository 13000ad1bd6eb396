"""The one model registry.

Every architecture registers its builder with :func:`register`; everything else (CLI,
training loop, tests) finds models here, so adding a family is one decorated function.

    @register("unet", task="segmentation", family="unet")
    def unet(num_classes, input_shape, base_filters=64, depth=4): ...
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from kcv.capabilities import Capabilities
from kcv.errors import KcvError

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    Attributes:
        name: registry name (``resnet50``).
        task: ``classification`` or ``segmentation``.
        family: the file/family it belongs to (``resnet``).
        builder: ``builder(num_classes, input_shape, **hyperparameters) -> keras.Model``.
        train_defaults: what ``kcv train`` uses when a flag is not given (``img_size``,
            ``epochs``, ``batch_size``, ``lr``, ``model_args``), chosen so that the
            flag-less command finishes in minutes on a laptop CPU.
        min_size: the smallest input side the architecture accepts.
        paper: the reference the builder follows.
        taps: feature taps of a classifier, ``{stride: layer_name}`` for strides 4, 8, 16,
            32 (2 where the family has it), read by segmentation decoders through
            :mod:`kcv.models.backbone`. Builders of tap-exposing families accept
            ``features_only=True`` and then return the model without its head.
        reference: the published figures the standard variant is checked against, e.g.
            ``{"params": 25_557_032, "gflops": 4.09, "source": "torchvision"}`` (224 px,
            1000 classes); shown beside ours in the docs/models.md model table.
        capabilities: what the model can do (:class:`kcv.capabilities.Capabilities`): how it
            is fitted, Grad-CAM, ties; every stage asks these, never the family name.
    """

    name: str
    task: str
    family: str
    builder: Callable
    train_defaults: dict = field(default_factory=dict)
    min_size: int = 32
    paper: str = ""
    taps: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    capabilities: Capabilities = Capabilities()

    @property
    def hyperparameters(self) -> dict:
        """Keyword hyperparameters of the builder with their defaults."""
        sig = inspect.signature(self.builder)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k not in ("num_classes", "input_shape", "features_only")
            and p.default is not inspect.Parameter.empty
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, task: str, family: str, train_defaults: dict | None = None,
             min_size: int = 32, paper: str = "", taps: dict | None = None,
             reference: dict | None = None, capabilities: Capabilities | None = None):
    """Decorator that adds a model builder to the registry under ``name``; ``capabilities``
    only where the model is not a gradient-trained CNN (k-NN)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, task, family, fn, dict(train_defaults or {}),
                                    min_size, paper, dict(taps or {}), dict(reference or {}),
                                    capabilities or Capabilities())
        return fn

    return deco


def _ensure_loaded():
    # Importing the models package runs every family's @register decorators.
    import kcv.models  # noqa: F401


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name raises :class:`KcvError` with close matches."""
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `kcv models` lists them"
        raise KcvError(f"unknown architecture '{name}'{hint}")
    return _REGISTRY[name]


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally only those of one ``task``."""
    _ensure_loaded()
    if task is not None and task not in TASKS:
        raise KcvError(f"unknown task '{task}': choose one of {', '.join(TASKS)}")
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def create_model(name: str, num_classes: int, input_shape=(224, 224, 3), weights=None,
                 **hyperparameters):
    """Build the training model of architecture ``name``.

    Args:
        name: a registered name (see :func:`list_models`).
        num_classes: number of output classes (segmentation: including background).
        input_shape: ``(H, W, 3)``; ``H``/``W`` may be ``None`` where the family allows it.
        weights: ``None`` (initialised) or ``"imagenet"``: keras.applications' ImageNet
            weights, with the builder options they need (:mod:`kcv.models.imagenet`); the
            classifier too with 1000 classes; a segmentation model's ``backbone``.
        **hyperparameters: builder keywords, e.g. ``base_filters=16`` for ``unet``.

    Returns:
        A Keras functional model taking RGB pixels in [0, 255] and returning logits.
    """
    spec = get_spec(name)
    known = spec.hyperparameters
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise KcvError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for '{name}'; "
            f"it takes: {', '.join(sorted(known)) or 'none'}")
    if int(num_classes) < 2:
        raise KcvError(f"num_classes must be at least 2, got {num_classes}")
    hyperparameters = {k: typed_hyperparameter(k, v, known[k]) for k, v in hyperparameters.items()}
    if weights is not None and weights != "imagenet":
        raise KcvError(f"weights={weights!r}: None or 'imagenet'")
    if weights:
        from kcv.models import imagenet

        hyperparameters = imagenet.imagenet_args(spec, hyperparameters)
    model = spec.builder(num_classes=int(num_classes), input_shape=tuple(input_shape), **hyperparameters)
    if weights:
        imagenet.load(model, name, hyperparameters, tuple(input_shape), spec.task)
    return model


def typed_hyperparameter(key: str, value, default):
    """``value`` checked against the type of the builder's default for ``key``.

    The builders carry no annotations, so their defaults are the contract: an int stays an
    int (``4.5`` and ``"abc"`` are refused, not stored or crashed on), a float takes an
    int or a float (also YAML's ``1e-3``, which it reads as text), a bool only a bool, a
    string only a string, a tuple a list. ``None`` defaults accept anything; what the
    builder then refuses is reported by :mod:`kcv.models.feasibility`.
    """
    import math

    def refuse(what):
        return KcvError(f"--model-arg {key}={value!r}: {key} takes {what} (default {default!r})")

    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("an integer")
        return value
    if isinstance(default, float):
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise refuse("a number") from None
        if not math.isfinite(number):
            raise refuse("a finite number")
        return number
    if isinstance(default, str):
        if not isinstance(value, str):
            raise refuse("a string")
        return value
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise refuse("a list, e.g. [1, 2]")
        return type(default)(value)
    return value
