"""ImageNet weights for kcv models: keras.applications' files, loaded exactly.

For every model keras.applications publishes ImageNet weights for, :data:`ENTRIES` says
which builder options reproduce its network (the input normalisation the weights were
trained with, ResNet ``variant="v1"``, DenseNet's symmetric stem padding...) and which files
hold the weights. :func:`load` then places every tensor of the file: the file's layers with
weights, in the file's order (the order Keras itself loads them in), are paired with the
model's layers with weights in its order, every shape checked; the architectures are the
same network layer for layer, so the pairing is one-to-one, and a kcv model computes what
keras.applications computes with the same file (tests/models/test_imagenet.py, benchmarks/
imagenet_exactness.py). Anything else — another layer count, another shape — is refused in
one line, never loaded in part.

A classifier with 1000 classes gets the file with the classifier ("top"); any other class
count, and segmentation encoders, the "notop" file, and the head stays new (VGG: fc1, fc2
and the logits layer, which only the top file holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kcv import weights as wf
from kcv.contracts import LOGITS_LAYER
from kcv.data.imagenet_labels import CLASS_NAMES_FILE, class_names  # noqa: F401  (re-exported)
from kcv.errors import KcvError

IMAGENET = "imagenet"
IMAGENET_CLASSES = 1000
MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_ROWS = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class Entry:
    """What a kcv model needs for keras.applications' ImageNet weights."""

    arch: str
    args: dict  # builder options the weights fix
    keras_name: str  # the keras.applications constructor (for the docs and tests)
    top_only: tuple = ()  # layers besides ``logits`` that only the top file holds
    hashes: dict = field(default_factory=dict)  # {"top": md5, "notop": md5}


def _md5(top, notop):
    return {"top": top, "notop": notop}


_CAFFE = {"preprocessing": "caffe"}
ENTRIES: dict[str, Entry] = {}
for _arch, _top, _notop in (("vgg16", "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
                            ("vgg19", "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6")):
    ENTRIES[_arch] = Entry(_arch, {**_CAFFE, "batch_norm": False}, _arch.upper(),
                           (f"{_arch}_fc1", f"{_arch}_fc2"), _md5(_top, _notop))
for _arch, _top, _notop in (("resnet50", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
                            ("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
                            ("resnet152", "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c")):
    ENTRIES[_arch] = Entry(_arch, {**_CAFFE, "variant": "v1"}, "ResNet" + _arch[6:], (), _md5(_top, _notop))
for _arch, _top, _notop in (("densenet121", "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
                            ("densenet169", "d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
                            ("densenet201", "1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1")):
    ENTRIES[_arch] = Entry(_arch, {"preprocessing": "torch", "stem_padding": "symmetric",
                                   "bn_epsilon": 1.001e-5}, "DenseNet" + _arch[8:], (), _md5(_top, _notop))
ENTRIES["mobilenet_v2"] = Entry("mobilenet_v2", {"preprocessing": "tf"}, "MobileNetV2")
for _b, (_top, _notop) in enumerate((
        ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
        ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
        ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
        ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
        ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
        ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
        ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
        ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"))):
    ENTRIES[f"efficientnet_b{_b}"] = Entry(f"efficientnet_b{_b}", {"preprocessing": "efficientnet"},
                                           f"EfficientNetB{_b}", (), _md5(_top, _notop))


def has_weights(arch: str) -> bool:
    return arch in ENTRIES


def mobilenet_rows(input_shape) -> int:
    """keras.applications' choice: the input side if square and one of its sizes, else 224."""
    h, w = tuple(input_shape)[:2]
    return h if h == w and h in MOBILENET_ROWS else 224


def weight_file(arch: str, top: bool, model_args: dict | None = None, input_shape=(224, 224, 3)) -> wf.WeightFile:
    """The keras.applications file of ``arch`` (``top``: with the 1000-class classifier)."""
    entry = _entry(arch)
    if arch.startswith("vgg"):
        name = f"{arch}_weights_tf_dim_ordering_tf_kernels{'' if top else '_notop'}.h5"
        origin = f"{wf.KERAS_APPLICATIONS}{arch}/{name}"
    elif arch.startswith(("resnet", "densenet")):
        name = f"{arch}_weights_tf_dim_ordering_tf_kernels{'' if top else '_notop'}.h5"
        origin = f"{wf.KERAS_APPLICATIONS}{'resnet' if arch.startswith('resnet') else 'densenet'}/{name}"
    elif arch == "mobilenet_v2":
        alpha = float((model_args or {}).get("alpha", 1.0))
        if alpha not in MOBILENET_ALPHAS:
            raise KcvError(f"mobilenet_v2 alpha={alpha}: keras.applications has ImageNet weights for alpha "
                           f"{', '.join(map(str, MOBILENET_ALPHAS))} only")
        rows = mobilenet_rows(input_shape)
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}{'' if top else '_no_top'}.h5"
        origin = f"{wf.KERAS_APPLICATIONS}mobilenet_v2/{name}"
    else:
        name = f"efficientnet{arch[-2:]}{'' if top else '_notop'}.h5"
        origin = f"{wf.EFFICIENTNET_BASE}{name}"
    return wf.WeightFile(name, origin, entry.hashes.get("top" if top else "notop"), arch, top)


def all_files() -> list[wf.WeightFile]:
    """Every file of :data:`ENTRIES` (MobileNetV2: every alpha and size keras.applications has)."""
    files = []
    for arch in ENTRIES:
        shapes = [(r, r, 3) for r in MOBILENET_ROWS] if arch == "mobilenet_v2" else [(224, 224, 3)]
        alphas = MOBILENET_ALPHAS if arch == "mobilenet_v2" else (1.0,)
        for alpha in alphas:
            for shape in shapes:
                for top in (True, False):
                    files.append(weight_file(arch, top, {"alpha": alpha}, shape))
    return files


def identify(path) -> wf.WeightFile | None:
    """The keras.applications file ``path`` is, by its file name; ``None`` if unknown."""
    name = Path(str(path)).name
    return next((f for f in all_files() if f.name == name), None)


def _entry(arch: str) -> Entry:
    if arch not in ENTRIES:
        raise KcvError(f"'{arch}' has no ImageNet weights in keras.applications; models with them: "
                       f"{', '.join(ENTRIES)}")
    return ENTRIES[arch]


def _merge(where: str, fixed: dict, given: dict) -> dict:
    """``given`` with ``fixed`` added; a given value that contradicts a fixed one is an error."""
    for key, value in fixed.items():
        if key in given and given[key] != value:
            raise KcvError(f"{where}: ImageNet weights need {key}={value!r}, got {given[key]!r}")
    return {**given, **fixed}


def imagenet_args(spec, hyperparameters: dict) -> dict:
    """``hyperparameters`` plus what keras.applications' weights need, for registry entry
    ``spec`` (a classifier, or a segmentation model on ``backbone=`` such a classifier)."""
    hp = dict(hyperparameters)
    if spec.task == "classification":
        return _merge(spec.name, _entry(spec.name).args, hp)
    backbone = hp.get("backbone", spec.hyperparameters.get("backbone"))
    if backbone is None:
        raise KcvError(f"{spec.name}: ImageNet weights are for a backbone; pass --model-arg backbone=NAME "
                       f"(one of {', '.join(ENTRIES)})")
    hp["backbone"] = backbone
    hp["backbone_args"] = _merge(f"{spec.name} backbone {backbone}", _entry(backbone).args,
                                 dict(hp.get("backbone_args") or {}))
    return hp


def train_model_args(spec, defaults: dict, given: dict) -> dict:
    """``kcv train --pretrained imagenet``: the architecture's default ``model_args``, less
    those the weights fix (VGG's ``batch_norm``), then the user's, then the weights' own."""
    fixed = set(_entry(spec.name).args) if spec.task == "classification" else {"backbone_args"}
    if spec.task != "classification" and "backbone" not in given and "backbone" in defaults:
        fixed.add("backbone")  # the default backbone is for training from scratch
    kept = {k: v for k, v in defaults.items() if k not in fixed}
    return imagenet_args(spec, {**kept, **given})


def pretrained_model_args(spec, pretrained: str, given: dict, merged: dict) -> dict:
    """``model_args`` of a run with ``--pretrained``: for ImageNet weights (``imagenet`` or a
    keras.applications file) the options those weights need (:func:`train_model_args`);
    otherwise ``merged`` unchanged."""
    known = identify(pretrained) if pretrained != IMAGENET else None
    if pretrained != IMAGENET and known is None:
        return merged
    given = dict(given)
    if known and spec.task == "segmentation":
        given.setdefault("backbone", known.arch)
    target = spec.name if spec.task == "classification" else given.get("backbone")
    if known and target != known.arch:
        raise KcvError(f"--pretrained {pretrained}: keras.applications' weights of {known.arch}, "
                       f"not of {target}")
    return train_model_args(spec, spec.train_defaults.get("model_args", {}), given)


@dataclass
class Loaded:
    """What :func:`load` did."""

    file: str
    loaded: list  # model layers that got the file's weights
    new: list  # model layers left as initialised (the head without the top file)
    hash_status: str = ""

    def summary(self) -> str:
        s = f"ImageNet weights: {len(self.loaded)} layers with weights from {self.file}"
        return s + (f"; new: {', '.join(self.new)}" if self.new else "; the classifier too")


def _weighted(layers) -> list:
    return [layer for layer in layers if layer.weights]


def load(model, arch: str, model_args: dict, input_shape, task: str = "classification",
         path=None) -> Loaded:
    """Place the weights of keras.applications' ``arch`` file into ``model`` (see the module
    docstring); ``path`` overrides the cached file (``--pretrained FILE``).

    Raises:
        KcvError: the file is missing offline, or does not fit the model exactly.
    """
    if task == "classification":
        top = int(model.get_layer(LOGITS_LAYER).units) == IMAGENET_CLASSES
        ours = _weighted(model.layers)
        args = model_args
    else:
        top, args = False, dict(model_args.get("backbone_args") or {})
        arch = model_args["backbone"]
        ours = _encoder_layers(model, arch, args)
    file = weight_file(arch, top, args, input_shape)
    if path is None:
        path = wf.locate(file)
    weights = list(wf.read_layers(path).items())
    head = [] if top else [layer for layer in ours if layer.name in {LOGITS_LAYER, *_entry(arch).top_only}]
    body = [layer for layer in ours if layer not in head]
    if len(weights) != len(body):
        raise KcvError(f"{path}: {len(weights)} layers with weights, {model.name} needs {len(body)}: "
                       f"not the {file.name} of {arch}")
    for k, (layer, (name, arrays)) in enumerate(zip(body, weights)):
        want = [tuple(v.shape) for v in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise KcvError(f"{path}: layer #{k} '{name}' has shapes {got}, {layer.name} of {model.name} "
                           f"needs {want}: not the network kcv builds for {arch} with {args}")
    for layer, (_, arrays) in zip(body, weights):
        layer.load_own_variables({str(i): a for i, a in enumerate(arrays)})
    return Loaded(str(path), [layer.name for layer in body], [layer.name for layer in head])


def _encoder_layers(model, backbone: str, backbone_args: dict) -> list:
    """The segmentation model's encoder layers with weights, in its layer order: the
    backbone's layers keep their names (``resnet50_…``, and its first layer ``normalize``),
    and their order in the model is the backbone's own (checked for every decoder on
    ResNet-50, MobileNetV2, VGG16, EfficientNet-B0 and DenseNet-121), i.e. the notop file's."""
    return [layer for layer in _weighted(model.layers)
            if layer.name.startswith(f"{backbone}_") or layer.name == "normalize"]


