"""ONNX graph layout and onnxruntime settings vs LiteRT, batch 1, CPU.

For each model: the ONNX graph tf2onnx writes *without* its transpose optimizer (what a
naive NHWC→NCHW conversion looks like) and *with* it (what ``Model.export(format="onnx")``,
i.e. ``kcv export --onnx``, writes), plus ``inputs_as_nchw`` (NCHW input: no input
Transpose, but a different input contract); Transpose counts; onnxruntime p50/p95 at
optimization levels BASIC and ALL, with the intra-op thread pool spinning (onnxruntime's
default) or not (kcv's default); and LiteRT fp32 (XNNPACK) for reference.

    python benchmarks/onnx_layout.py                      # kcv U-Net 64 px + test CNN + MobileNetV2 224
    python benchmarks/onnx_layout.py --models mobilenetv2 --threads 2 --runs 100

MobileNetV2 is ``keras.applications.MobileNetV2(weights=None)`` (random weights, nothing
downloaded) to compare with the anchors of issue 7. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(name: str):
    import keras

    import kcv
    from kcv.models import inference_model

    keras.utils.set_random_seed(0)
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)), 224
    if name == "unet":
        return inference_model(kcv.create_model("unet", 4, (64, 64, 3), base_filters=16)), 64
    if name == "cnn":
        from tests.export.fixtures import build_test_cnn
        return inference_model(build_test_cnn(3, (64, 64, 3))), 64
    raise SystemExit(f"unknown model {name}")


def to_onnx(model, path, size, transpose_opt=True, nchw=False):
    """tf2onnx directly, so that its optimizer list and inputs_as_nchw can be changed."""
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    from kcv.export.tflite import quiet

    patch_tf2onnx()  # numpy 2 compatibility, as Model.export(format="onnx") does
    spec = [tf.TensorSpec((None, size, size, 3), tf.float32, name="image")]
    fn = tf.function(lambda x: model(x, training=False), input_signature=spec)
    saved = dict(tf2onnx.optimizer._optimizers)
    if not transpose_opt:
        tf2onnx.optimizer._optimizers.pop("optimize_transpose")
    try:
        with quiet():
            tf2onnx.convert.from_function(fn, spec, opset=15, output_path=str(path),
                                          inputs_as_nchw=["image:0"] if nchw else None)
    finally:
        tf2onnx.optimizer._optimizers.clear()
        tf2onnx.optimizer._optimizers.update(saved)


def paired_latency(run_a, run_b, runs):
    """p50/p95 (ms) of ``run_a`` and ``run_b`` timed alternately, so that both see the same
    machine load (this benchmark was written on a shared 2-core machine)."""
    for _ in range(5):
        run_a()
        run_b()
    ta, tb = [], []
    for _ in range(runs):
        for run, ts in ((run_a, ta), (run_b, tb)):
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
    pct = lambda ts, q: float(np.percentile(ts, q) * 1e3)  # noqa: E731
    return (pct(ta, 50), pct(ta, 95)), (pct(tb, 50), pct(tb, 95))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="unet,cnn,mobilenetv2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()

    import onnx

    from kcv.export.tflite import convert_fp32
    from kcv.runtime.runners import LiteRTRunner, OnnxRunner

    print("| model | ONNX graph | Transposes | ORT level | spin | ORT p50 ms | ORT p95 ms | LiteRT p50 ms "
          "| ORT / LiteRT |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model, size = build(name)
        model(np.zeros((1, size, size, 3), "float32"))
        x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            convert_fp32(model, d / "m.tflite")
            tfl = LiteRTRunner(d / "m.tflite", args.threads)
            graphs = {"no transpose optimizer": dict(transpose_opt=False), "kcv export --onnx": {},
                      "inputs_as_nchw": dict(nchw=True)}
            for label, kw in graphs.items():
                path = d / f"{label}.onnx"
                to_onnx(model, path, size, **kw)
                n_t = Counter(n.op_type for n in onnx.load(str(path)).graph.node)["Transpose"]
                xin = x.transpose(0, 3, 1, 2).copy() if kw.get("nchw") else x
                settings = {"no transpose optimizer": [("ORT_ENABLE_BASIC", False), ("ORT_ENABLE_ALL", False)],
                            "kcv export --onnx": [("ORT_ENABLE_BASIC", False), ("ORT_ENABLE_ALL", True),
                                                  ("ORT_ENABLE_ALL", False)],
                            "inputs_as_nchw": [("ORT_ENABLE_ALL", False)]}[label]
                for level, spin in settings:
                    r = OnnxRunner(path, args.threads, spin=spin, level=level)
                    (p50, p95), (lite, _) = paired_latency(lambda: r(xin), lambda: tfl(x), args.runs)
                    print(f"| {name} {size}px | {label} | {n_t} | {level[11:]} | {'on' if spin else 'off'} | "
                          f"{p50:.2f} | {p95:.2f} | {lite:.2f} | {p50 / lite:.2f} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
