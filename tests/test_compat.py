"""kcv.compat: the one module that touches Keras internals, its version check, its graph walker."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from kcv import compat
from kcv.errors import KcvError
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
KCV = ROOT / "kcv"
COMPAT = KCV / "compat.py"
# Builtins that take an attribute name as a string: getattr(x, "_private") counts as access.
_BY_NAME = {"getattr", "hasattr", "setattr", "delattr", "__setattr__", "__getattribute__"}

# ------------------------------------------------------------------------------------------
# (a) no keras.src import, no private Keras attribute outside kcv/compat.py
#
# The rule, per file of kcv/ other than compat.py:
#   1. no ``import keras.src...``, ``from keras.src... import``, or ``keras.src`` attribute;
#   2. every private attribute used (``x._name``, or "_name" given to getattr/hasattr/
#      setattr/delattr/__setattr__; ``_name`` not a dunder) is a name kcv itself defines
#      (a def, class, or assignment to ``_name`` / ``obj._name`` somewhere in kcv/);
#   3. no private name a Keras-side class of kcv defines (in its body, or as ``self._name``
#      in its methods) is a private name of a Keras object (a built functional model, a
#      layer, a KerasTensor, an optimizer, a seed generator, a callback, a loss, a metric),
#      so overriding or shadowing a Keras private cannot pass rule 2 either. Keras-side: a
#      base is written ``keras.…``, ``layers.…`` (``from keras import layers``),
#      ``compat.…`` (its mixins), or is a Keras-side class of kcv.
# Exceptions (ours, named like a Keras private by coincidence): none today.
_ALLOWED_COLLISIONS: set[str] = set()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), str(p)) for p in sorted(KCV.rglob("*.py")) if p != COMPAT}


def _defined_private_names(trees) -> set[str]:
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {n for n in names if _is_private(n)}


def _keras_side_classes(trees) -> list[ast.ClassDef]:
    classes = [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    side: dict[str, ast.ClassDef] = {}
    while True:
        new = {c.name: c for c in classes if c.name not in side and any(
            ast.unparse(b).startswith(("keras.", "layers.", "compat.")) or ast.unparse(b) in side
            for b in c.bases)}
        if not new:
            return list(side.values())
        side.update(new)


def _class_private_names(cls: ast.ClassDef) -> set[str]:
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names |= {t.id for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    names |= {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
              and isinstance(n.value, ast.Name) and n.value.id == "self"}
    return {n for n in names if _is_private(n)}


def _private_uses(tree) -> list[tuple[int, str]]:
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            uses.append((node.lineno, node.attr))
        elif isinstance(node, ast.Call) and node.args:
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            for arg in node.args[:2]:
                if (name in _BY_NAME and isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                        and _is_private(arg.value)):
                    uses.append((node.lineno, arg.value))
    return uses


def _keras_src_uses(tree) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines += [node.lineno for a in node.names if a.name.startswith("keras.src")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr == "src" and isinstance(node.value, ast.Name)
              and node.value.id == "keras"):
            lines.append(node.lineno)
    return lines


def _keras_private_names() -> set[str]:
    inputs = keras.Input((8, 8, 3))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.BatchNormalization()(inputs)))
    optimizer = keras.optimizers.AdamW()
    optimizer.build(model.trainable_variables)
    objects = [model, dense, keras.layers.BatchNormalization(), keras.layers.RandomRotation(0.1),
               keras.callbacks.TerminateOnNaN(), keras.metrics.Metric(),
               keras.Sequential([keras.layers.Dense(1)]), inputs, optimizer, keras.random.SeedGenerator(0),
               keras.callbacks.Callback(), keras.losses.SparseCategoricalCrossentropy(),
               keras.metrics.SparseCategoricalAccuracy()]
    return {n for obj in objects for n in dir(obj) if _is_private(n)}


def test_the_rule_catches_what_it_is_meant_to():
    tree = ast.parse("import keras.src.ops\nfrom keras.src.random import x\nkeras.src.y\n"
                     "t._keras_history\ngetattr(m, '_nodes')\nobject.__setattr__(l, '_gen', 1)\n"
                     "x.__class__\nx.public\n")
    assert _keras_src_uses(tree) == [1, 2, 3]
    assert [name for _, name in _private_uses(tree)] == ["_keras_history", "_nodes", "_gen"]
    classes = ast.parse("class _A:\n def _f(self):\n  self._g = 1\n_h = 2\nclass B(keras.layers.Layer):\n"
                        " _i = 0\n def _j(self):\n  self._k = x._l = 1\nclass C(B): pass\nclass D(C): pass\n")
    assert _defined_private_names([classes]) == {"_A", "_f", "_g", "_h", "_i", "_j", "_k", "_l"}
    assert [c.name for c in _keras_side_classes([classes])] == ["B", "C", "D"]
    assert _class_private_names(_keras_side_classes([classes])[0]) == {"_i", "_j", "_k"}


def test_no_keras_src_import_or_private_keras_attribute_outside_compat():
    sources = _sources()
    ours = _defined_private_names(sources.values())
    problems = [f"{p.relative_to(ROOT)}:{line}: keras.src" for p, tree in sources.items()
                for line in _keras_src_uses(tree)]
    problems += [f"{p.relative_to(ROOT)}:{line}: .{name} is not defined in kcv/"
                 for p, tree in sources.items() for line, name in _private_uses(tree) if name not in ours]
    keras_side = set().union(*map(_class_private_names, _keras_side_classes(sources.values())))
    collisions = (keras_side & _keras_private_names()) - _ALLOWED_COLLISIONS
    problems += [f"kcv/ defines {name}, a private name of a Keras object" for name in sorted(collisions)]
    assert not problems, "move these into kcv/compat.py:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------
# (b) the version check


@pytest.mark.parametrize("package,version", [("keras", "3.16.0"), ("keras", "3.13.2"), ("tensorflow", "2.22.0")])
def test_an_unchecked_version_is_refused_in_one_line(monkeypatch, package, version):
    monkeypatch.delenv(compat.SKIP_ENV, raising=False)
    monkeypatch.setattr(keras if package == "keras" else tf, "__version__", version)
    lo, hi = compat.CHECKED[package]
    with pytest.raises(KcvError) as e:
        compat.check()
    assert str(e.value).startswith(f"{package} {version} is not a version kcv was checked on ({lo} to {hi})")
    assert compat.pip_range(package) in str(e.value) and compat.SKIP_ENV in str(e.value)
    with pytest.raises(KcvError):  # every internal checks first
        compat.all_layers(keras.layers.Dense(1))
    monkeypatch.setenv(compat.SKIP_ENV, "1")
    compat.check()


def test_installed_versions_pass_and_patch_releases_count_as_their_minor(monkeypatch):
    compat.check()
    monkeypatch.delenv(compat.SKIP_ENV, raising=False)
    monkeypatch.setattr(keras, "__version__", compat.CHECKED["keras"][1] + ".99rc1")
    compat.check()


def test_train_refuses_an_unchecked_keras_before_writing_anything(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(compat.SKIP_ENV, raising=False)
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    code, _, err = run_cli(["train", "--arch", "lenet5", "--epochs", "1", "--out", str(tmp_path / "runs")],
                           capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: keras 3.99.0 is not a version kcv was checked on "
                                        f"({compat.CHECKED['keras'][0]} to {compat.CHECKED['keras'][1]}): "
                                        f"pip install '{compat.pip_range('keras')}', or set "
                                        f"{compat.SKIP_ENV}=1 to run anyway"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_pyproject_bounds_keras_and_tensorflow_to_the_checked_range():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert compat.pip_range("keras") in deps
    assert compat.pip_range("tensorflow") in deps


# ------------------------------------------------------------------------------------------
# (c) the graph walker


def _graph():
    """input -> conv -> pool -> (a, b) -> add -> gap -> dense, and a second model calling ``conv``."""
    L = keras.layers
    inputs = keras.Input((8, 8, 3), name="img")
    conv = L.Conv2D(4, 3, padding="same", name="conv")
    x = conv(inputs)
    p = L.MaxPooling2D(name="pool")(x)
    a, b = L.Conv2D(4, 1, name="a")(p), L.Conv2D(4, 1, name="b")(p)
    s = L.Add(name="add")([a, b])
    out = L.Dense(2, name="dense")(L.GlobalAveragePooling2D(name="gap")(s))
    model = keras.Model(inputs, out)
    other_in = keras.Input((16, 16, 3))
    other = keras.Model(other_in, conv(other_in))
    return model, other, dict(x=x, p=p, a=a, b=b, s=s)


def test_producer_calls_and_walk_up():
    model, other, t = _graph()
    call = compat.producer(t["s"])
    assert call.layer is model.get_layer("add")
    assert list(call.inputs) == [t["a"], t["b"]] and list(call.outputs) == [t["s"]]
    assert compat.producer(model.inputs[0]).inputs == ()

    conv = model.get_layer("conv")
    assert len(compat.calls(conv)) == 2  # in both models
    assert [c.outputs[0] for c in compat.calls(conv, model)] == [t["x"]]
    assert [c.outputs[0] for c in compat.calls(conv, other)] == list(other.outputs)

    names = [c.layer.name for _, c in compat.walk_up(model.outputs)]
    assert names == ["dense", "gap", "add", "a", "pool", "conv", "img", "b"]  # depth first, each once
    chain = [c.layer.name for _, c in compat.walk_up(model.outputs, first_input=True)]
    assert chain == ["dense", "gap", "add", "a", "pool", "conv", "img"]
    stopped = [c.layer.name for _, c in compat.walk_up(model.outputs, stop=lambda _, c: c.layer.name == "add")]
    assert stopped == ["dense", "gap", "add"]


def test_layer_helpers():
    model, _, _ = _graph()
    assert [layer.name for layer in compat.all_layers(model, include_self=False)] == \
        [layer.name for layer in model.layers]
    bn = keras.layers.BatchNormalization()
    bn.build((None, 3))
    assert [v.name for v in compat.own_variables(bn)] == ["gamma", "beta", "moving_mean", "moving_variance"]
    before = compat.global_rng_state()
    keras.random.uniform((1,))  # an unseeded draw advances the global generator
    assert compat.global_rng_state() != before
    compat.set_global_rng_state(before)
    assert compat.global_rng_state() == before
