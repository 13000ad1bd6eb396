"""What a model can do, declared by the model, asked by every stage.

Training, transfer, distillation, self-training, Grad-CAM and export verification ask a
model's :class:`Capabilities` instead of testing its family name, so a family that is not a
gradient-trained CNN (the k-NN baseline) declares what it lacks in one place and every stage
follows. A registered architecture carries them on its :class:`~kcv.registry.ModelSpec`
(``@register(..., capabilities=...)``); a built or loaded model, where only the ``.keras``
file is at hand, answers through its layers (:func:`of_model`): a layer class that changes
what the model can do has a ``capabilities`` class attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

FITS = {"gradients": "trained by gradient descent",
        "references": "fitted in one pass from a reference set"}


@dataclass(frozen=True)
class Capabilities:
    """What a model can do; the defaults are a gradient-trained CNN's.

    Attributes:
        fit: ``"gradients"`` (``model.fit`` on a loss) or ``"references"`` (one pass stores
            the training set's features, :mod:`kcv.train.knn`). Training options that only
            mean something under gradient descent (``--augment``, ``--loss``, ``--lr``, ...)
            are refused for a reference-set model (``needs`` in :mod:`kcv.options`).
        gradcam: the model has a convolutional feature map whose gradient Grad-CAM reads.
        ties: its outputs jump at ties (a nearest-neighbour vote), where any runtime's float
            noise may flip them; export verification reports such inputs apart. The layer
            that declares it implements ``tie_mask(model, images)`` and ``tie_rule``.
        why: what the model does instead, quoted when a stage refuses it.
    """

    fit: str = "gradients"
    gradcam: bool = True
    ties: bool = False
    why: str = ""

    def __post_init__(self):
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {tuple(FITS)}, got {self.fit!r}")

    @property
    def gradients(self) -> bool:
        return self.fit == "gradients"

    @property
    def references(self) -> bool:
        return self.fit == "references"

    def describe(self) -> str:
        """``trained by gradient descent`` or ``fitted in one pass from a reference set``."""
        return FITS[self.fit]


DEFAULT = Capabilities()


def _layers(model):
    """Every layer of ``model``, nested models' layers included."""
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _layers(layer)


def _declaring(model):
    return [layer for layer in _layers(model) if isinstance(getattr(layer, "capabilities", None), Capabilities)]


def of_model(model) -> Capabilities:
    """The capabilities of a built or loaded model: the least capable of what its layers
    declare (a model holding a reference-set layer is fitted from references, even if a
    trained CNN computes its features); :data:`DEFAULT` when none declares any."""
    declared = [layer.capabilities for layer in _declaring(model)]
    if not declared:
        return DEFAULT
    return Capabilities(fit="references" if any(c.references for c in declared) else "gradients",
                        gradcam=all(c.gradcam for c in declared), ties=any(c.ties for c in declared),
                        why="; ".join(dict.fromkeys(c.why for c in declared if c.why)))


def tie_layer(model):
    """The layer of ``model`` whose output may jump at ties, or ``None``: its
    ``tie_mask(model, images)`` says which images sit at one, ``tie_rule`` what one is."""
    return next((layer for layer in _declaring(model) if layer.capabilities.ties), None)

