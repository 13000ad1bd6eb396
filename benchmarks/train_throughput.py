"""Training throughput: kcv (Keras 3 + TensorFlow) vs the same U-Net in PyTorch, and what
kcv's input pipeline costs compared with ``model.fit`` on in-memory tensors.

One command measures everything and rewrites its section of ``benchmarks/RESULTS.md``::

    pip install -e ".[bench]"            # torch; the CPU build, see below
    python benchmarks/train_throughput.py                 # all variants, ~15 min on 2 cores
    python benchmarks/train_throughput.py --only keras,torch --steps 20   # a subset

Model (both frameworks): U-Net, depth 4, 16 base filters, (3×3 conv, BN, ReLU)×2 per level,
2×2 max-pool, 2×2 stride-2 transposed conv up, concatenated skips, 1×1 head; 128 px RGB,
batch 8, 4 classes, Adam 1e-3, cross-entropy. Random in-memory data for the framework
comparison (speed does not depend on values).

Every variant runs in its own process, because thread pools, oneDNN and the dtype policy
are fixed when TensorFlow/PyTorch start. Throughput = images / wall time of the timed
steps, after warm-up steps (tracing, oneDNN primitive creation). ``--repeats N`` makes N round-robin passes
over the variants and keeps each one's best run. Numbers from a shared machine are noisy
(the load average is recorded), PyTorch's most of all: its OpenMP threads spin while
waiting, which collapses when other processes hold the cores.

Use PyTorch's CPU wheel (``pip install torch --index-url https://download.pytorch.org/whl/cpu``):
the default Linux wheel brings CUDA libraries and Triton, and importing Triton after
TensorFlow segfaults the one-process ``interleaved`` variant (seen with torch 2.14.1+cu130
and TF 2.21).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMG, BATCH, CLASSES, DEPTH, BASE = 128, 8, 4, 4, 16
RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- train_throughput:begin -->", "<!-- train_throughput:end -->"

# name -> (runner, settings, environment, description)
VARIANTS = {
    "torch": ("torch", {}, {}, "PyTorch eager, fp32, NCHW"),
    "torch-channels-last": ("torch", {"channels_last": True}, {}, "PyTorch, channels_last memory format"),
    "torch-bf16": ("torch", {"bf16": True}, {}, "PyTorch, autocast bfloat16"),
    "torch-omp-passive": ("torch", {}, {"OMP_WAIT_POLICY": "PASSIVE"}, "PyTorch, OMP_WAIT_POLICY=PASSIVE"),
    "keras": ("keras", {}, {}, "plain Keras model.fit, fp32 (TF defaults)"),
    "keras-onednn-off": ("keras", {}, {"TF_ENABLE_ONEDNN_OPTS": "0"}, "TF_ENABLE_ONEDNN_OPTS=0"),
    "keras-threads-2x1": ("keras", {"intra": 2, "inter": 1}, {}, "intra-op 2, inter-op 1 threads"),
    "keras-threads-1x2": ("keras", {"intra": 1, "inter": 2}, {}, "intra-op 1, inter-op 2 threads"),
    "keras-jit": ("keras", {"jit": True}, {}, "jit_compile=True (XLA)"),
    "keras-spe8": ("keras", {"spe": 8}, {}, "steps_per_execution=8"),
    "keras-bf16": ("keras", {"precision": "mixed_bfloat16"}, {}, "mixed_bfloat16 (AMX/AVX512-BF16 via oneDNN)"),
    "keras-fp16": ("keras", {"precision": "mixed_float16"}, {}, "mixed_float16 (loss scaling); very slow on CPU"),
    "kcv-fit": ("keras", {"fused_bn": True}, {}, "kcv's fit: Keras + fused batch norm (kcv.train.fused_bn)"),
    "kcv-fit-threads-2x1": ("keras", {"fused_bn": True, "intra": 2, "inter": 1}, {}, "kcv's fit, intra 2 / inter 1"),
    "kcv-fit-spe8": ("keras", {"fused_bn": True, "spe": 8}, {}, "kcv's fit, steps_per_execution=8"),
    "kcv-fit-jit": ("keras", {"fused_bn": True, "jit": True}, {}, "kcv's fit, XLA"),
    "kcv-fit-bf16": ("keras", {"fused_bn": True, "precision": "mixed_bfloat16"}, {}, "kcv's fit, mixed_bfloat16"),
    "interleaved": ("interleaved", {}, {"OMP_WAIT_POLICY": "PASSIVE"},
                    "plain Keras, kcv and PyTorch in one process, steps alternating"),
    "pipeline-interleaved": ("pipeline", {}, {}, "fit on arrays vs on kcv's train_stream, epochs alternating"),
    "kcv-train": ("kcv", {"augment": "none"}, {}, "kcv train (tf.data pipeline, no augmentation)"),
    "kcv-train-aug": ("kcv", {"augment": None}, {}, "kcv train (default segmentation augmentation: flip)"),
    "fit-memory": ("memory", {}, {}, "model.fit on in-memory arrays: same model, loss, metrics, epochs"),
}
# Run by default; the others on request (--only): keras-fp16 takes minutes per step on
# CPUs (TensorFlow has no fast float16 CPU kernels), threads-1x2 was never better.
OPTIONAL = {"keras-fp16", "keras-threads-1x2"}
FRAMEWORK_ROWS = [v for v in VARIANTS if VARIANTS[v][0] in ("torch", "keras")]
PIPELINE_ROWS = ["fit-memory", "kcv-train", "kcv-train-aug"]


# ----------------------------------------------------------------------------- workers
def _keras_model(precision="float32"):
    import keras

    import kcv

    keras.config.set_dtype_policy(precision)
    return kcv.create_model("unet", CLASSES, (IMG, IMG, 3), base_filters=BASE, depth=DEPTH)


def _configure_tf_threads(settings):
    import tensorflow as tf

    if "intra" in settings:
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra"])
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter"])


class _EpochTimer:
    """Seconds of each epoch's training steps (validation excluded)."""

    def __init__(self):
        import keras

        class T(keras.callbacks.Callback):
            def on_epoch_begin(s, epoch, logs=None):
                s.t0, s.t1 = time.perf_counter(), None

            def on_test_begin(s, logs=None):
                s.t1 = s.t1 or time.perf_counter()

            def on_epoch_end(s, epoch, logs=None):
                self.seconds.append((s.t1 or time.perf_counter()) - s.t0)

        self.seconds = []
        self.callback = T()


def run_keras(settings, steps, warmup):
    """Plain Keras: model.fit on in-memory NumPy arrays; epoch 1 warms up, epoch 2 is timed."""
    import keras
    import numpy as np

    from kcv.train.fused_bn import fused_batch_norm

    _configure_tf_threads(settings)
    model = _keras_model(settings.get("precision", "float32"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=settings.get("jit", False), steps_per_execution=settings.get("spe", 1))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH * steps, IMG, IMG, 3)).astype("float32")
    y = rng.integers(0, CLASSES, (BATCH * steps, IMG, IMG)).astype("int32")
    timer = _EpochTimer()
    with fused_batch_norm(bool(settings.get("fused_bn"))):
        model.fit(x[:BATCH * warmup], y[:BATCH * warmup], batch_size=BATCH, epochs=1, verbose=0)
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[timer.callback])
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"img_per_sec": BATCH * steps / timer.seconds[-1], "trainable_params": trainable}


def torch_step(settings):
    """``(step(i), trainable params)`` for the PyTorch U-Net: one Adam step per call."""
    import torch
    from torch import nn

    def double(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-5),
                             nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                             nn.BatchNorm2d(cout, eps=1e-5), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [BASE * 2**i for i in range(DEPTH + 1)]
            self.downs = nn.ModuleList([double(3 if i == 0 else ch[i - 1], ch[i]) for i in range(DEPTH)])
            self.bottleneck = double(ch[DEPTH - 1], ch[DEPTH])
            self.ups = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(DEPTH)])
            self.decs = nn.ModuleList([double(2 * ch[i], ch[i]) for i in range(DEPTH)])
            self.head = nn.Conv2d(ch[0], CLASSES, 1)

        def forward(self, x):
            x = x / 127.5 - 1.0
            skips = []
            for down in self.downs:
                x = down(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.bottleneck(x)
            for i in reversed(range(DEPTH)):
                x = self.decs[i](torch.cat([skips[i], self.ups[i](x)], dim=1))
            return self.head(x)

    torch.manual_seed(0)
    fmt = torch.channels_last if settings.get("channels_last") else torch.contiguous_format
    model = UNet().to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    xs = [(torch.rand(BATCH, 3, IMG, IMG, generator=g) * 255).contiguous(memory_format=fmt) for _ in range(4)]
    ys = [torch.randint(0, CLASSES, (BATCH, IMG, IMG), generator=g) for _ in range(4)]
    model.train()

    def step(i):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(settings.get("bf16"))):
            loss = loss_fn(model(xs[i % 4]).float(), ys[i % 4])
        loss.backward()
        opt.step()

    return step, int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def run_torch(settings, steps, warmup):
    """The same U-Net in PyTorch, a plain training loop over in-memory batches."""
    import torch

    step, trainable = torch_step(settings)
    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    seconds = time.perf_counter() - t0
    return {"img_per_sec": BATCH * steps / seconds, "trainable_params": trainable,
            "threads": torch.get_num_threads()}


def keras_step(fused_bn: bool, precision: str = "float32"):
    """``step(i)``: one ``train_on_batch`` of the kcv U-Net, traced with or without fused BN."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kcv.train.fused_bn import fused_batch_norm

    model = _keras_model(precision)
    keras.config.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (BATCH, IMG, IMG, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, CLASSES, (BATCH, IMG, IMG)).astype("int32"))
    with fused_batch_norm(fused_bn):  # the step function is traced here, once
        model.train_on_batch(x, y)
    return lambda i: model.train_on_batch(x, y)


def run_interleaved(settings, steps, warmup):
    """Plain Keras, kcv (fused BN) and PyTorch in ONE process, one step of each in turn;
    the median step time of each. Load changes on a shared machine then hit all three
    alike, so the ratios hold even when the absolute figures do not. PyTorch runs with
    OMP_WAIT_POLICY=PASSIVE here (set by the orchestrator), or its spinning OpenMP threads
    would steal the cores from TensorFlow's next step."""
    import statistics as st

    steps_by_name = {"keras": keras_step(False), "kcv": keras_step(True),
                     "kcv_bf16": keras_step(True, "mixed_bfloat16"), "torch": torch_step({})[0],
                     "torch_cl": torch_step({"channels_last": True})[0], "torch_bf16": torch_step({"bf16": True})[0]}
    times = {k: [] for k in steps_by_name}
    for i in range(warmup + steps):
        for name, step in steps_by_name.items():
            t0 = time.perf_counter()
            step(i)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    rate = {k: BATCH / st.median(v) for k, v in times.items()}
    return {"img_per_sec": rate["kcv"], **rate}


def _pipeline_data(steps):
    """The shapes training set at 128 px: ``steps`` batches per epoch."""
    return f"shapes:{BATCH * steps}"


def run_kcv(settings, steps, warmup, epochs=4):
    """``kcv train`` end to end; images/sec from history.csv (median of epochs 2..)."""
    import csv
    import tempfile

    from kcv.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        run = train(TrainConfig(arch="unet", data=_pipeline_data(steps), img_size=IMG, batch_size=BATCH,
                                epochs=epochs, lr=1e-3, model_args={"base_filters": BASE, "depth": DEPTH},
                                augment=settings.get("augment"), out=out, verbose=0))
        rows = list(csv.DictReader((run / "history.csv").open()))
    rates = [float(r["images_per_sec"]) for r in rows[1:]]
    return {"img_per_sec": statistics.median(rates), "epochs": rates}


def run_memory(settings, steps, warmup, epochs=4):
    """model.fit on the same shapes arrays held in memory, timed like kcv train (same
    loss, metrics and fused batch norm: only the input pipeline differs)."""
    import keras
    import numpy as np

    from kcv import losses, metrics
    from kcv.data.pipeline import load_data
    from kcv.train.fused_bn import fused_batch_norm

    source = load_data(_pipeline_data(steps), "segmentation", IMG)
    x, y = source.arrays("train")
    model = _keras_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=losses.get_loss("ce", "segmentation"),
                  metrics=metrics.training_metrics("segmentation", CLASSES), jit_compile=False)
    timer = _EpochTimer()
    with fused_batch_norm(True):
        model.fit(x, y.astype(np.int32), batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer.callback])
    rates = [len(x) / s for s in timer.seconds[1:]]
    return {"img_per_sec": statistics.median(rates), "epochs": rates}


def run_pipeline_interleaved(settings, steps, warmup, rounds=3):
    """One model, epochs alternating between ``fit`` on in-memory arrays and ``fit`` on
    kcv's ``train_stream`` (no augmentation, and the default ``flip``): the pipeline's cost
    with the load of a shared machine cancelled out. Same loss, metrics, fused BN."""
    import statistics as st

    import keras

    from kcv import losses, metrics
    from kcv.augment import Augmenter
    from kcv.data.pipeline import load_data
    from kcv.train.fused_bn import fused_batch_norm

    source = load_data(_pipeline_data(steps), "segmentation", IMG)
    x, y = source.arrays("train")
    model = _keras_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get_loss("ce", "segmentation"),
                  metrics=metrics.training_metrics("segmentation", CLASSES), jit_compile=False)
    spe = source.steps_per_epoch(BATCH)
    # each fit() call iterates its stream afresh: epoch 0 of the stream, shuffle and all
    streams = {"pipeline": source.train_stream(BATCH, 0, 1),
               "pipeline_flip": source.train_stream(BATCH, 0, 1, augment=Augmenter("flip", "segmentation", CLASSES))}
    rates = {"memory": [], "pipeline": [], "pipeline_flip": []}
    with fused_batch_norm(True):
        for r in range(rounds + 1):  # round 0 warms up (tracing) and is not counted
            for name in rates:
                timer = _EpochTimer()
                if name == "memory":
                    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[timer.callback])
                else:
                    model.fit(streams[name], steps_per_epoch=spe, epochs=1, verbose=0, callbacks=[timer.callback])
                if r:
                    rates[name].append(len(x) / timer.seconds[-1])
    med = {k: st.median(v) for k, v in rates.items()}
    return {"img_per_sec": med["pipeline"], "memory": med["memory"], "pipeline_flip": med["pipeline_flip"],
            "overhead": 1 - med["pipeline"] / med["memory"], "overhead_flip": 1 - med["pipeline_flip"] / med["memory"]}


RUNNERS = {"keras": run_keras, "torch": run_torch, "kcv": run_kcv, "memory": run_memory,
           "interleaved": run_interleaved, "pipeline": run_pipeline_interleaved}


def worker(name, steps, warmup):
    runner, settings, _, _ = VARIANTS[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = RUNNERS[runner](settings, steps, warmup)
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------ orchestrator
def run_once(name, steps, warmup):
    env = {**os.environ, **VARIANTS[name][2], "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--steps", str(steps),
                          "--warmup", str(warmup)], env=env, capture_output=True, text=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(line[-1][7:])
    print(f"{name:22s} {result['img_per_sec']:8.2f} img/s", flush=True)
    return result


def measure_all(names, steps, warmup, repeats):
    """Round-robin over the variants, ``repeats`` times, so a change in machine load hits
    every variant alike; keep each variant's best run (the least disturbed one)."""
    runs = {n: [] for n in names}
    for _ in range(repeats):
        for n in names:
            runs[n].append(run_once(n, steps, warmup))
    best = {}
    for n, results in runs.items():
        best[n] = max(results, key=lambda r: r["img_per_sec"])
        best[n]["runs"] = [round(r["img_per_sec"], 2) for r in results]
    return best


def machine() -> dict:
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("tensorflow", "keras", "torch", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "-"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions,
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def render(results, info_before, info_after, steps, date) -> str:
    torch_base = results.get("torch", {}).get("img_per_sec")
    lines = [BEGIN, "",
             f"### Training throughput (`benchmarks/train_throughput.py`, {date})", "",
             f"Machine: {info_before['cpu']}, {info_before['cores']} cores; Python {info_before['python']}, "
             f"TensorFlow {info_before['tensorflow']}, Keras {info_before['keras']}, PyTorch {info_before['torch']}, "
             f"NumPy {info_before['numpy']}. Load average {info_before['load']:.1f} before, "
             f"{info_after['load']:.1f} after (2 cores: above ~2 the figures are noisy).", "",
             f"U-Net depth {DEPTH}, {BASE} base filters, BN, transposed conv, {IMG} px, batch {BATCH}, "
             f"{CLASSES} classes, Adam; {steps} timed steps after warm-up.", "",
             "| variant | what | images/sec (best) | runs | × PyTorch fp32 |", "|---|---|---:|---|---:|"]
    for name in FRAMEWORK_ROWS:
        if name in results:
            r = results[name]["img_per_sec"]
            ratio = f"{r / torch_base:.2f}×" if torch_base else "-"
            runs = ", ".join(f"{v:.1f}" for v in results[name]["runs"])
            lines.append(f"| `{name}` | {VARIANTS[name][3]} | {r:.2f} | {runs} | {ratio} |")
    if "interleaved" in results:
        r = results["interleaved"]
        names = [("keras", "plain Keras fp32"), ("kcv", "kcv fp32 (fused BN)"), ("kcv_bf16", "kcv mixed_bfloat16"),
                 ("torch", "PyTorch fp32"), ("torch_cl", "PyTorch fp32 channels_last"),
                 ("torch_bf16", "PyTorch autocast bf16")]
        lines += ["", "Same process, one step of each in turn (`interleaved`: load changes hit all alike; "
                  "PyTorch with `OMP_WAIT_POLICY=PASSIVE`), median step time:", "",
                  "| model | images/sec | × PyTorch fp32 |", "|---|---:|---:|"]
        lines += [f"| {label} | {r[k]:.2f} | {r[k] / r['torch']:.2f}× |" for k, label in names if k in r]
    if all(n in results for n in ("fit-memory", "kcv-train")):
        base = results["fit-memory"]["img_per_sec"]
        lines += ["", "Input pipeline: `kcv train` (shapes data through tf.data, images/sec of "
                  "`history.csv`, median of epochs 2–4) against `model.fit` on the same arrays in memory:", "",
                  "| variant | what | images/sec | pipeline cost |", "|---|---|---:|---:|"]
        for name in PIPELINE_ROWS:
            if name in results:
                r = results[name]["img_per_sec"]
                cost = "reference" if name == "fit-memory" else f"{(1 - r / base) * 100:+.1f} %"
                lines.append(f"| `{name}` | {VARIANTS[name][3]} | {r:.2f} | {cost} |")
    if "pipeline-interleaved" in results:
        r = results["pipeline-interleaved"]
        lines += ["", "Same model, epochs alternating between the two inputs (`pipeline-interleaved`, robust "
                  "to load changes), median of 3 epochs each:", "",
                  "| in-memory arrays img/s | kcv pipeline img/s | cost | kcv pipeline + flip img/s | cost |",
                  "|---:|---:|---:|---:|---:|",
                  f"| {r['memory']:.2f} | {r['img_per_sec']:.2f} | {r['overhead'] * 100:+.1f} % | "
                  f"{r['pipeline_flip']:.2f} | {r['overhead_flip'] * 100:+.1f} % |"]
    lines += ["", END]
    return "\n".join(lines)


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda m: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated variants (default: all): " + ", ".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=24, help="timed training steps per variant")
    ap.add_argument("--warmup", type=int, default=4, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=2, help="round-robin passes; each variant's best run is kept")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.steps, args.warmup)
    names = args.only.split(",") if args.only else [v for v in VARIANTS if v not in OPTIONAL]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(unknown)}")
    before = machine()
    results = measure_all(names, args.steps, args.warmup, args.repeats)
    section = render(results, before, machine(), args.steps, time.strftime("%Y-%m-%d"))
    print(section)
    if not args.no_write:
        write_results(section)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
