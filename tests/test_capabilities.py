"""Models declare what they can do (:mod:`kcv.capabilities`); every stage asks the
declaration, and options a model cannot honour are refused in one line before any data is
loaded."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import pytest

import kcv
from kcv import capabilities
from kcv.errors import KcvError
from kcv.registry import get_spec, list_models
from kcv.train import TrainConfig
from tests.conftest import run_cli

KCV = Path(kcv.__file__).parent


def test_knn_declares_what_it_lacks_and_the_others_the_defaults():
    knn = get_spec("knn").capabilities
    assert (knn.fit, knn.gradcam, knn.ties) == ("references", False, True)
    others = {get_spec(n).capabilities for n in list_models() if n != "knn"}
    assert others == {capabilities.DEFAULT} and capabilities.DEFAULT.gradients


def test_a_loaded_model_answers_through_its_layers(tmp_path):
    model = kcv.create_model("knn", 3, (8, 8, 3), reference_size=6, k=3)
    model.save(tmp_path / "knn.keras")
    loaded = keras.saving.load_model(tmp_path / "knn.keras", compile=False)
    assert capabilities.of_model(loaded) == get_spec("knn").capabilities
    assert capabilities.tie_layer(loaded) is loaded.get_layer("logits")
    cnn = kcv.create_model("lenet5", 3, (32, 32, 3))
    assert capabilities.of_model(cnn) == capabilities.DEFAULT and capabilities.tie_layer(cnn) is None


def test_no_stage_tests_the_family_name():
    """Issue 13's acceptance: the k-NN family is named only in its own model file (and the
    registry); nothing compares a spec's family."""
    quoted = {p.relative_to(KCV).as_posix() for p in KCV.rglob("*.py") if '"knn"' in p.read_text()}
    assert quoted <= {"models/classification/knn.py", "registry.py"}, quoted
    family_tests = [p.name for p in KCV.rglob("*.py") if re.search(r"family\s*[!=]=", p.read_text())]
    assert not family_tests


REFUSED = [
    ["--augment", "flip"], ["--loss", "bce"], ["--precision", "mixed_float16"],
    ["--class-weights", "auto"], ["--label-smoothing", "0.1"], ["--jit"],
    ["--steps-per-execution", "2"], ["--optimizer", "sgd"], ["--lr", "0.01"],
    ["--schedule", "cosine"], ["--warmup-epochs", "1"], ["--momentum", "0.5"],
    ["--no-nesterov"], ["--weight-decay", "0.01"], ["--epochs", "3"], ["--patience", "2"],
    ["--distribute", "none"], ["--tensorboard"], ["--teacher", "RUN"], ["--temperature", "2"],
    ["--alpha", "0.3"], ["--unlabeled", "shapes:4"], ["--pretrained", "RUN"],
    ["--freeze-backbone"], ["--backbone-lr-mult", "0.1"],
]


@pytest.mark.parametrize("flag", REFUSED, ids=lambda f: f[0])
def test_knn_refuses_each_flag_it_cannot_honour(flag, tmp_path, capsys):
    out = tmp_path / "runs"
    code, _, err = run_cli(["train", "--arch", "knn", "--data", "shapes:8", "--out", str(out), *flag], capsys)
    assert code == 2 and err.startswith(f"error: {flag[0]}: knn is fitted in one pass") and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("argv, flag", [(["--arch", "knn"], "--arch knn"),
                                         (["--arch", "lenet5", "--student-arch", "knn"], "--student-arch knn")])
def test_self_train_refuses_knn_students(argv, flag, tmp_path, capsys):
    out = tmp_path / "runs"
    code, _, err = run_cli(["self-train", *argv, "--data", "shapes:8", "--out", str(out)], capsys)
    assert code == 2 and err.startswith(f"error: {flag}: the students would be knn") and err.count("\n") == 1, err
    assert not out.exists()


def test_backbone_is_refused_for_gradient_models(tmp_path, capsys):
    code, _, err = run_cli(["train", "--arch", "lenet5", "--backbone", "RUN", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--backbone is for --arch knn only" in err and err.count("\n") == 1, err


def test_defaults_are_not_refusals_in_the_python_api():
    cfg = TrainConfig(arch="knn", optimizer="adam", nesterov=True, loss="ce", verbose=0).resolved()
    assert cfg.epochs == get_spec("knn").train_defaults["epochs"]
    with pytest.raises(KcvError, match="^--augment: knn is fitted"):
        TrainConfig(arch="knn", augment="flip").resolved()
