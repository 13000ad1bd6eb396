"""Transfer learning: ``--pretrained RUN|FILE``, ``--freeze-backbone``, ``--backbone-lr-mult F``.

The course's recipe (Yosinski et al. 2014, "How transferable are features in deep neural
networks?", arXiv:1411.1792): start from weights learnt on another task, replace the head,
then either train only the new head on frozen features (feature extraction) or fine-tune
the whole network with a lower learning rate for the old layers than for the new head.

- ``--pretrained imagenet``: keras.applications' ImageNet weights for the architecture (or a
  segmentation model's ``backbone=``), built with the options those weights need and loaded
  exactly (:mod:`kcv.models.imagenet`); a keras.applications file on disk, under its own
  file name, is loaded the same way.
- Otherwise weights are matched **by layer name** (kcv's deterministic layer names make a
  ResNet-18 classifier's layers line up with the encoder of a U-Net on
  ``backbone=resnet18``). Nothing is loaded in part in silence: a layer whose name matches
  but whose shapes differ refuses the whole file in one line, the layers the file does not
  have are listed as left new, and where the file holds a whole model (a run or ``.keras``)
  the outputs of the deepest loaded layer are compared with the source model's. kcv never
  matches by layer order: a file whose names are not kcv's (a renamed keras.applications
  file) could be the right shapes for a network that normalises its input differently.
  The head is never copied: it is freshly initialised, so the task and the class count
  may differ from the source's.
- Sources: a kcv run directory, a ``.keras`` model, a ``.weights.h5`` file, or a
  keras.applications ``.h5`` weights file. The files are read with h5py, layer by layer;
  nothing is deserialised for the weights.
- ``backbone`` = everything but the head: classification, the layers the input of
  ``logits`` depends on; segmentation, the layers the encoder's feature taps depend on.
  ``--freeze-backbone`` sets them ``trainable = False``, which in Keras 3 also runs their
  BatchNorm layers in inference mode (moving statistics used and left unchanged).
- ``--backbone-lr-mult F`` (no tensorflow-addons): the optimizer is swapped for a
  subclass whose ``update_step`` multiplies the learning rate by F for backbone variables
  (and their decoupled weight decay, which is proportional to the learning rate), so the
  backbone's step is exactly F× the head's for SGD, Adam and AdamW alike. Scaling the
  *gradients* instead would do nothing under Adam, whose step is invariant to the
  gradient's scale.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from kcv import compat
from kcv.errors import KcvError
from kcv.models import imagenet
from kcv.registry import get_spec
from kcv.train.loop import TrainConfig, TrainPlugin, register_plugin
from kcv.contracts import LOGITS_LAYER, MODEL_FILE

# ------------------------------------------------------------------------------------------
# Reading weights from files, by layer name


def _h5_file(path: Path):
    import h5py

    if path.suffix == ".keras" or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")
    return h5py.File(path, "r")


def _keras3_layers(group, found: dict, repeated: set) -> None:
    """Collect ``{layer name: [arrays]}`` from a Keras 3 weights file (``layers/*/vars``
    groups carry the layer's name as an attribute)."""
    import h5py

    for key, item in group.items():
        if not isinstance(item, h5py.Group):
            continue
        if key == "vars":
            name = item.attrs.get("name")
            arrays = [np.asarray(item[str(i)]) for i in range(len(item))]
            if name is None or not arrays:
                continue
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name in found:
                repeated.add(name)
            found[name] = arrays
        else:
            _keras3_layers(item, found, repeated)


def _legacy_layers(group) -> dict:
    """``{layer name: [arrays]}`` from a Keras 2 ``.h5`` file (keras.applications weights)."""
    if "model_weights" in group:  # a whole-model .h5 rather than save_weights output
        group = group["model_weights"]
    found = {}
    for raw in group.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[name].attrs["weight_names"]]
        if names:
            found[name] = [np.asarray(group[name][n]) for n in names]
    return found


def read_weights(source) -> tuple[dict, str]:
    """``({layer name: [arrays in save order]}, description)`` of ``--pretrained source``.

    Raises:
        KcvError: the path does not exist or is not a weights file kcv can read.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise KcvError(f"--pretrained {source}: a directory without {MODEL_FILE} "
                           "(not a kcv run)")
        path = path / MODEL_FILE
    elif not path.is_file():
        raise KcvError(f"--pretrained {source}: no such run directory or file")
    try:
        with _h5_file(path) as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return _legacy_layers(f), f"{path} (Keras 2 .h5)"
            found, repeated = {}, set()
            _keras3_layers(f["layers"] if "layers" in f else f, found, repeated)
    except KcvError:
        raise
    except Exception as e:  # corrupt zip, not HDF5, no model.weights.h5 inside, ...
        raise KcvError(f"--pretrained {path}: not a readable Keras weights file "
                       f"({type(e).__name__}: {e})") from None
    for name in repeated:  # ambiguous: nested models reusing a name
        found.pop(name, None)
    if not found:
        raise KcvError(f"--pretrained {path}: holds no layer weights")
    return found, str(path)


# ------------------------------------------------------------------------------------------
# Which layers are the head and which the backbone


def _weighted_layers(model) -> list:
    return [layer for layer in compat.all_layers(model, include_self=False) if compat.own_variables(layer)]


def _outputs(model, layer_names) -> list:
    """The output tensors of the named layers' calls inside ``model``."""
    return [t for n in layer_names for call in compat.calls(model.get_layer(n), model) for t in call.outputs]


def _ancestors(model, tensors) -> set[str]:
    """Names of the layers of ``model`` that ``tensors`` depend on (their producers included)."""
    return {call.layer.name for _, call in compat.walk_up(tensors)} & {layer.name for layer in model.layers}


def head_layers(model) -> set[str]:
    """The layers a new task replaces: walking back from each model output, the first
    layers with weights (``logits`` and auxiliary logits; a segmentation model's final
    classifier convolution)."""
    def weighted(_, call):
        return bool(call.layer.weights)

    return {call.layer.name for t, call in compat.walk_up(model.outputs, stop=weighted) if weighted(t, call)}


def _segmentation_taps(model, arch: str, model_args: dict) -> list[str]:
    from kcv.models.backbone import feature_taps

    names = {layer.name for layer in model.layers}
    backbone = model_args.get("backbone", get_spec(arch).hyperparameters.get("backbone"))
    if backbone:
        return [n for n in feature_taps(backbone).values() if n in names]
    return [n for n in names if "_down" in n]  # U-Net's own contracting path


def backbone_layers(model, task: str, arch: str, model_args: dict | None = None) -> set[str]:
    """Names of the backbone's layers (see the module docstring).

    Raises:
        KcvError: the model has no ``logits`` layer (classification) or no recognisable
            encoder (segmentation).
    """
    if task == "classification":
        try:
            logits = model.get_layer(LOGITS_LAYER)
        except ValueError:
            raise KcvError(f"{arch}: no layer named {LOGITS_LAYER!r}, cannot tell its head from its backbone") from None
        return _ancestors(model, [t for call in compat.calls(logits, model) for t in call.inputs])
    taps = _segmentation_taps(model, arch, dict(model_args or {}))
    if not taps:
        raise KcvError(f"{arch}: cannot find its encoder's feature taps (the backbone)")
    return _ancestors(model, _outputs(model, taps))


# ------------------------------------------------------------------------------------------
# Copying the weights


@dataclass
class TransferReport:
    """What :func:`load_pretrained` did, for the log and ``config.json``."""

    source: str
    transferred: list = field(default_factory=list)
    head: list = field(default_factory=list)
    missing: list = field(default_factory=list)  # not in the source
    matched_by: str = "name"
    total: int = 0  # layers of the model with weights
    compared: str = ""  # what the output comparison with a whole source model found

    def summary(self) -> str:
        s = (f"pretrained: {len(self.transferred)} of {self.total} layers with weights transferred "
             f"from {self.source} (matched by {self.matched_by}); head freshly initialised: "
             f"{', '.join(sorted(self.head)) or 'none'}")
        if self.missing:
            more = f" (+{len(self.missing) - 6} more)" if len(self.missing) > 6 else ""
            s += f"; {len(self.missing)} not in the source, left new: {', '.join(self.missing[:6])}{more}"
        if self.compared:
            s += f"; {self.compared}"
        return s

    def record(self) -> dict:
        return {"source": self.source, "layers_transferred": len(self.transferred),
                "layers_with_weights": self.total, "matched_by": self.matched_by,
                "head": sorted(self.head), "left_new": self.missing, "compared": self.compared}


def _shapes(arrays) -> list[tuple]:
    return [tuple(np.shape(a)) for a in arrays]


def _assign(layer, arrays) -> None:
    layer.load_own_variables({str(i): a for i, a in enumerate(arrays)})


def transfer_weights(model, weights: dict, source: str = "") -> TransferReport:
    """Copy ``weights`` (``{layer name: arrays}``) into ``model`` by layer name, skipping the
    head; a layer whose name matches but whose shapes differ refuses the file.

    Raises:
        KcvError: a shape mismatch (one line naming the layer and both shapes).
    """
    head = head_layers(model)
    body = [layer for layer in _weighted_layers(model) if layer.name not in head]
    report = TransferReport(source, head=sorted(head), total=len(body) + len(head))
    for layer in body:
        arrays = weights.get(layer.name)
        if arrays is None:
            report.missing.append(layer.name)
            continue
        want = [tuple(v.shape) for v in compat.own_variables(layer)]
        if _shapes(arrays) != want:
            raise KcvError(f"--pretrained {source}: layer {layer.name} has shapes {_shapes(arrays)} in the "
                           f"file and {want} in {model.name}; not loaded (a different network or options)")
    for layer in body:
        if layer.name in weights:
            _assign(layer, weights[layer.name])
            report.transferred.append(layer.name)
    return report


def load_pretrained(model, source, arch: str | None = None, model_args: dict | None = None,
                    task: str = "classification") -> TransferReport:
    """Initialise ``model`` from ``--pretrained source``; see :func:`transfer_weights`, and
    :mod:`kcv.models.imagenet` for ``"imagenet"`` and keras.applications files.

    Raises:
        KcvError: unreadable source, not a single layer matched, a shape mismatch, or
            outputs that differ from a whole source model's.
    """
    if source == imagenet.IMAGENET or imagenet.identify(source):
        return _load_imagenet(model, source, arch, dict(model_args or {}), task)
    weights, where = read_weights(source)
    report = transfer_weights(model, weights, where)
    if not report.transferred:
        some = ", ".join(list(weights)[:4])
        hint = (" kcv does not match by layer order; a keras.applications file is recognised by its "
                "own name (`kcv weights list`) or, through `kcv weights import FILE`, by its MD5"
                if where.endswith("(Keras 2 .h5)") else "")
        raise KcvError(f"--pretrained {source}: no layer of {model.name} matches the file by name "
                       f"(the file has e.g. {some}); is it the same architecture?{hint}")
    if task == "classification":
        report.compared = compare_outputs(model, source, report)
    return report


def _load_imagenet(model, source, arch, model_args, task) -> TransferReport:
    if arch is None:
        known = imagenet.identify(source)
        arch = known.arch if known else model.name
    shape = tuple(model.inputs[0].shape[1:])
    loaded = imagenet.load(model, arch, model_args, shape, task,
                           path=None if source == imagenet.IMAGENET else source)
    head = head_layers(model)
    new = [layer.name for layer in _weighted_layers(model)
           if layer.name not in head and layer.name not in set(loaded.loaded)]
    return TransferReport(loaded.file, transferred=loaded.loaded, head=sorted(head), missing=new,
                          matched_by="keras.applications ImageNet file", total=len(_weighted_layers(model)))


def compare_outputs(model, source, report: TransferReport) -> str:
    """Where ``source`` holds a whole model (a run or ``.keras``), run it and ``model`` on the
    same random images and compare the deepest loaded layer's output.

    Raises:
        KcvError: they differ (the same weights in a network that computes something else).
    """
    path = Path(source)
    path = path / MODEL_FILE if path.is_dir() else path
    if path.suffix != ".keras":
        return ""  # weights only: nothing to run
    src = keras.saving.load_model(path, compile=False)
    names = {layer.name for layer in src.layers}
    done = set(report.transferred)
    deepest = next((layer.name for layer in reversed(model.layers) if layer.name in done and layer.name in names), None)
    shape, src_shape = tuple(model.inputs[0].shape[1:]), tuple(src.inputs[0].shape[1:])
    if deepest is None or any(a != b and None not in (a, b) for a, b in zip(shape, src_shape)):
        return "outputs not compared (input sizes differ)"
    side = [d or 64 for d in shape]
    x = np.random.default_rng(0).uniform(0, 255, (2, *side)).astype("float32")
    ours = keras.Model(model.inputs, model.get_layer(deepest).output)(x, training=False)
    theirs = keras.Model(src.inputs, src.get_layer(deepest).output)(x, training=False)
    delta = float(np.abs(np.asarray(ours) - np.asarray(theirs)).max())
    scale = float(np.abs(np.asarray(theirs)).max()) or 1.0
    if delta > 1e-4 * scale + 1e-6:
        raise KcvError(f"--pretrained {source}: with the same weights, {deepest} differs from the source "
                       f"model's by {delta:.3g} (max {scale:.3g}): the networks compute different things "
                       "(other options, e.g. input normalisation); not loaded")
    return f"outputs of {deepest} equal the source's (max |diff| {delta:.1e})"


# ------------------------------------------------------------------------------------------
# A learning-rate multiplier for the backbone's variables


class _BackboneLR(compat.OptimizerHooks):
    """Mixin for a Keras optimizer: the learning rate of the variables whose ``path`` is in
    ``backbone_variables`` is multiplied by ``backbone_lr_mult``."""

    def __init__(self, *args, backbone_lr_mult: float = 1.0, backbone_variables=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.backbone_variables = sorted(backbone_variables)

    def build(self, variables):
        super().build(variables)
        paths = set(self.backbone_variables)
        self._backbone_index = {i for i, v in enumerate(variables) if v.path in paths}

    def _in_backbone(self, variable) -> bool:
        return self.variable_index(variable) in self._backbone_index

    def decays(self, variable):
        # Backbone variables decay inside update_step, at their own (scaled) rate.
        return self.keras_decays(variable) and not self._in_backbone(variable)

    def update_step(self, gradient, variable, learning_rate):
        if self._in_backbone(variable):
            learning_rate = keras.ops.multiply(learning_rate, self.backbone_lr_mult)
            if self.weight_decay is not None and self.keras_decays(variable):
                lr = keras.ops.cast(learning_rate, variable.dtype)
                self.assign_sub(variable, variable * keras.ops.cast(self.weight_decay, variable.dtype) * lr)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_lr_mult": self.backbone_lr_mult,
                "backbone_variables": self.backbone_variables}


def _scaled_class(base):
    cls = type(f"BackboneLR{base.__name__}", (_BackboneLR, base),
               {"__doc__": f"{base.__name__} with a learning-rate multiplier for backbone variables."})
    return keras.saving.register_keras_serializable(package="kcv")(cls)


_SCALED = {base: _scaled_class(base) for base in (keras.optimizers.SGD, keras.optimizers.Adam,
                                                  keras.optimizers.AdamW)}


def with_backbone_lr_mult(optimizer, backbone_variables, multiplier: float):
    """A copy of ``optimizer`` (SGD, Adam or AdamW, not yet built) whose learning rate for
    ``backbone_variables`` (variable paths) is ``multiplier`` × its own."""
    cls = _SCALED.get(type(optimizer))
    if cls is None:
        raise KcvError(f"--backbone-lr-mult: not available for {type(optimizer).__name__}")
    new = cls.from_config({**optimizer.get_config(), "backbone_lr_mult": multiplier,
                           "backbone_variables": list(backbone_variables)})
    compat.copy_weight_decay_exclusions(optimizer, new)
    return new


# ------------------------------------------------------------------------------------------
# The training-loop plugin


class TransferPlugin(TrainPlugin):
    """``kcv train --pretrained/--freeze-backbone/--backbone-lr-mult``."""

    def __init__(self):
        self.report: TransferReport | None = None
        self.backbone: set[str] = set()
        self.backbone_paths: list[str] = []

    def applies(self, cfg: TrainConfig) -> bool:
        return bool(cfg.pretrained or cfg.freeze_backbone or cfg.backbone_lr_mult is not None)

    def check(self, cfg: TrainConfig, spec) -> None:
        if cfg.freeze_backbone and cfg.backbone_lr_mult is not None:
            raise KcvError("--freeze-backbone and --backbone-lr-mult exclude each other "
                           "(frozen = a multiplier of 0)")
        if (cfg.freeze_backbone or cfg.backbone_lr_mult is not None) and not cfg.pretrained:
            flag = "--freeze-backbone" if cfg.freeze_backbone else "--backbone-lr-mult"
            raise KcvError(f"{flag} needs --pretrained imagenet|RUN|FILE (a backbone worth keeping)")
        if cfg.pretrained and cfg.pretrained != imagenet.IMAGENET and not Path(cfg.pretrained).exists():
            raise KcvError(f"--pretrained {cfg.pretrained}: no such run directory or file")

    def prepare_model(self, model, cfg: TrainConfig, source):
        self.report = (load_pretrained(model, cfg.pretrained, cfg.arch, cfg.model_args, source.task)
                       if cfg.pretrained else None)
        if cfg.verbose and self.report:
            print(self.report.summary(), flush=True)
        self.backbone = backbone_layers(model, source.task, cfg.arch, cfg.model_args)
        top = [layer for layer in model.layers if layer.name in self.backbone]
        self.backbone_paths = [v.path for layer in top for v in layer.trainable_weights]
        if cfg.freeze_backbone:
            for layer in top:
                layer.trainable = False  # Keras 3: BatchNorm then runs in inference mode
        return model

    def compile_args(self, args: dict, cfg: TrainConfig, source) -> dict:
        if cfg.backbone_lr_mult is not None:
            args["optimizer"] = with_backbone_lr_mult(args["optimizer"], self.backbone_paths,
                                                      cfg.backbone_lr_mult)
        return args

    def record(self, cfg: TrainConfig) -> dict:
        out = {"backbone_layers": len(self.backbone)}
        if self.report:
            out.update(self.report.record())
        return {"transfer": out}


register_plugin(TransferPlugin)
