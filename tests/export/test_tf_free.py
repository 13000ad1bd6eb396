"""``kcv predict`` and ``kcv benchmark`` on ``.tflite`` / ``.onnx`` files without TensorFlow
(issue 15 item 4): run in a subprocess where importing ``tensorflow`` or ``keras`` raises,
with the same output as the TensorFlow path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kcv.data import shapes
from kcv.runtime.runners import LiteRTRunner
from kcv.runtime.image import resize_to_uint8
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]

# Run the `kcv` console script's entry with TensorFlow and Keras made unimportable, and
# fail if anything got them into sys.modules anyway.
BLOCKED = r'''
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test", name=name)
        return None

sys.meta_path.insert(0, Block())
import atexit
atexit.register(lambda: sys.modules.get("tensorflow") is None and sys.modules.get("keras") is None
                or sys.stderr.write("LEAKED TENSORFLOW\n"))
from kcv_entry import main
main(sys.argv[1:])
'''


def run_blocked(args, tmp_path):
    script = tmp_path / "blocked_kcv.py"
    script.write_text(BLOCKED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert "LEAKED TENSORFLOW" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Validation images at sizes unlike the model's (predict resizes them)."""
    folder = tmp_path_factory.mktemp("photos")
    for i, size in enumerate((40, 57, 97)):
        x, _ = shapes.make_split(1, size, "classification", "val")
        Image.fromarray(x[0]).save(folder / f"p{i}.png")
    return folder


def tf_resized(path, size):
    """The TensorFlow path ``kcv predict`` took before: tf.image.resize, rounded to uint8."""
    original = np.asarray(Image.open(path).convert("RGB"))
    img = tf.image.resize(original, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8).numpy()


def test_resize_matches_tensorflow_bit_for_bit():
    rng = np.random.default_rng(0)
    for h, w, size in [(40, 40, (32, 32)), (97, 57, (64, 64)), (480, 640, (224, 224)), (17, 23, (64, 48)),
                       (64, 64, (64, 64)), (5, 700, (3, 20))]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(img, size, "bilinear", antialias=True)),
                                            0, 255), tf.uint8).numpy()
        np.testing.assert_array_equal(resize_to_uint8(img, size), expected)


@pytest.mark.parametrize("file", ["model_fp32.tflite", "model_int8.tflite", "model.onnx"])
def test_predict_without_tensorflow_classifier(cnn_exported, photos, tmp_path, capsys, file):
    run_dir, _ = cnn_exported
    model = run_dir / "exports" / file
    code, today, err = run_cli(["predict", str(model), str(photos), "--top-k", "3"], capsys)
    assert code == 0, err
    proc = run_blocked(["predict", model, photos, "--top-k", "3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == today
    if file.endswith(".tflite"):  # and the probabilities are those of TensorFlow's resize
        runner, size = LiteRTRunner(model), json.loads((run_dir / "config.json").read_text())["img_size"]
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            probs = runner(tf_resized(rec["file"], size)[None].astype(np.float32))[0]
            names = json.loads((run_dir / "config.json").read_text())["class_names"]
            assert [p["prob"] for p in rec["top_k"]] == [round(float(p), 4) for p in np.sort(probs)[::-1]]
            assert rec["top_k"][0]["label"] == names[int(probs.argmax())]


def test_predict_without_tensorflow_segmentation(unet_exported, tmp_path, capsys):
    run_dir, _ = unet_exported
    xs, _ = shapes.make_split(2, 48, "segmentation", "val")
    for i, x in enumerate(xs):
        Image.fromarray(x).save(tmp_path / f"seg{i}.png")
    model = run_dir / "exports" / "model_int8.tflite"
    code, today, err = run_cli(["predict", str(model), str(tmp_path / "seg0.png"), str(tmp_path / "seg1.png"),
                                "--out", str(tmp_path / "today")], capsys)
    assert code == 0, err
    proc = run_blocked(["predict", model, tmp_path / "seg0.png", tmp_path / "seg1.png", "--out",
                        tmp_path / "edge"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("/edge/", "/today/") == today
    for name in ("seg0_mask.png", "seg1_mask.png", "seg0_overlay.png"):
        assert (tmp_path / "edge" / name).read_bytes() == (tmp_path / "today" / name).read_bytes()


def test_commands_that_need_tensorflow_say_so(tmp_path):
    proc = run_blocked(["export"], tmp_path)
    assert proc.returncode == 2 and "error: kcv export needs TensorFlow" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_benchmark_a_file_without_tensorflow(cnn_exported, photos, tmp_path):
    run_dir, _ = cnn_exported
    for file in ("model_int8.tflite", "model.onnx"):
        proc = run_blocked(["benchmark", run_dir / "exports" / file, photos, "--runs", "3"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        head, _, row = proc.stdout.strip().splitlines()
        assert head.startswith("| format | size MB | metric |")
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == ("tflite" if file.endswith(".tflite") else "onnx") and cells[2] == "—"
        assert float(cells[1]) == round((run_dir / "exports" / file).stat().st_size / 2**20, 3)
        assert float(cells[4]) > 0  # p50 ms
    proc = run_blocked(["benchmark", run_dir], tmp_path)  # a run's metric needs its data: TensorFlow
    assert proc.returncode == 2 and "error: kcv benchmark on a run needs TensorFlow" in proc.stderr
