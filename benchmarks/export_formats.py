"""Sizes and batch-1 CPU latency of every kcv export format for keras.applications models,
to compare with the anchors of issue 7 (2-core CPU, 224 px, random weights):

    MobileNetV2: LiteRT fp32 15.1 ms, LiteRT int8 14.6 ms, onnxruntime 20.6 ms, Keras tf.function 48 ms
    ResNet50:    61.8, 56.3, 142.8 and 121 ms;  int8 files 0.26-0.28x of fp32

    python benchmarks/export_formats.py                       # MobileNetV2
    python benchmarks/export_formats.py --models mobilenetv2,resnet50 --threads 2 --runs 30

Random weights (nothing is downloaded), so only sizes and speed mean anything here: the
int8 file is calibrated on 32 ``shapes`` images. Uses kcv's own converters and runners
(the code behind ``kcv export`` and ``kcv benchmark``); Keras runs through a
``tf.function``. All runtimes are timed round-robin (one call each, repeated) so that on a
shared machine they see the same load. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenetv2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    import kcv  # noqa: F401
    from kcv.data import shapes
    from kcv.export import onnx as onnx_export
    from kcv.export import tflite
    from kcv.runtime.runners import KerasRunner, LiteRTRunner, OnnxRunner

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    except RuntimeError:
        pass
    builders = {"mobilenetv2": keras.applications.MobileNetV2, "resnet50": keras.applications.ResNet50}
    print("| model | format | size MB | ×fp32 | p50 ms | p95 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        model = builders[name](weights=None, input_shape=(224, 224, 3))
        x = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
        model(x)
        calib = shapes.make_split(32, 224, "classification", "train")[0].astype("float32")
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            sm = tflite.stage_saved_model(model, d / "sm")
            files, runners = {}, {"keras tf.function": KerasRunner(model)}
            for variant in ("fp32", "fp16", "dynamic", "int8"):
                files[variant] = d / f"{variant}.tflite"
                files[variant].write_bytes(tflite.convert(sm, variant, calib if variant == "int8" else None))
                runners[f"LiteRT {variant}"] = LiteRTRunner(files[variant], args.threads)
            files["onnx"] = d / "m.onnx"
            onnx_export.convert(model, files["onnx"])
            runners["onnxruntime"] = OnnxRunner(files["onnx"], args.threads)
            times = {k: [] for k in runners}
            for i in range(args.runs + 3):
                for k, r in runners.items():
                    t0 = time.perf_counter()
                    r(x)
                    if i >= 3:  # warm-up rounds
                        times[k].append(time.perf_counter() - t0)
            fp32 = files["fp32"].stat().st_size
            for k, ts in times.items():
                f = files.get(k.split()[-1]) if k != "onnxruntime" else files["onnx"]
                size = f"{f.stat().st_size / 2**20:.2f}" if f else "—"
                ratio = f"{f.stat().st_size / fp32:.3f}" if f else "—"
                print(f"| {name} | {k} | {size} | {ratio} | {np.percentile(ts, 50) * 1e3:.1f} | "
                      f"{np.percentile(ts, 95) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
