"""Where the time of ``tests/models/test_zoo.py`` goes, per model and phase.

Repeats the zoo test's phases — build, one training step, .keras save/load, TFLite
conversion, LiteRT run — at the same tiny size and prints seconds per phase, so the slow
models of the suite can be named. Timings on a shared machine are noisy: re-run on a quiet
one. Usage::

    python benchmarks/zoo_test_phases.py [NAME ...]     # default: every fit-able model
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import kcv  # noqa: E402
from kcv.data import shapes  # noqa: E402
from kcv.export.tflite import convert_fp32  # noqa: E402
from kcv.models import inference_model  # noqa: E402
from kcv.registry import get_spec  # noqa: E402
from kcv.runtime.runners import LiteRTRunner  # noqa: E402


def phases(name: str, tmp: Path) -> dict:
    spec = get_spec(name)
    size = max(32, spec.min_size)
    n_cls = 3 if spec.task == "classification" else 4
    x, y = shapes.make_split(4, size, spec.task)
    x = x.astype("float32")
    t = {}
    t0 = time.perf_counter()
    keras.utils.set_random_seed(0)
    model = kcv.create_model(name, n_cls, (size, size, 3))
    t["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(x, y.astype("int32"), batch_size=2, epochs=1, steps_per_epoch=1, verbose=0)
    t["train_step"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.save(tmp / "m.keras")
    keras.saving.load_model(tmp / "m.keras")(x[:1], training=False)
    t["save_load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    infer = inference_model(model)
    convert_fp32(infer, tmp / "m.tflite")
    t["tflite_convert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    LiteRTRunner(tmp / "m.tflite")(x[:2])
    t["litert_run"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    t["params"] = model.count_params()
    t["tflite_mb"] = os.path.getsize(tmp / "m.tflite") / 2**20
    keras.backend.clear_session()
    return t


def main(names):
    names = names or [n for n in kcv.list_models() if get_spec(n).capabilities.gradients]
    print(f"{'model':<18}{'px':>4}{'params':>13}{'MB':>8}{'build':>8}{'step':>8}{'save/load':>10}"
          f"{'convert':>9}{'litert':>8}{'total':>8}", flush=True)
    for name in names:
        with tempfile.TemporaryDirectory() as d:
            t = phases(name, Path(d))
        print(f"{name:<18}{max(32, get_spec(name).min_size):>4}{t['params']:>13,}{t['tflite_mb']:>8.1f}"
              f"{t['build']:>8.1f}{t['train_step']:>8.1f}{t['save_load']:>10.1f}"
              f"{t['tflite_convert']:>9.1f}{t['litert_run']:>8.1f}{t['total']:>8.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
