"""``kcv benchmark``: size, metric and batch-1 CPU latency of every verified export of a run.

One row per format, Keras included:

* **size MB**: the file (the SavedModel folder; for Keras, ``model.keras`` as training
  saved it, optimizer state included — about 3× the weights with Adam).
* **metric / Δ**: accuracy or mIoU on the validation images (``--samples``), and its
  change against Keras in points.
* **latency p50 / p95**: ``--runs`` timed calls on one image after ``WARMUP`` untimed
  ones, batch 1. LiteRT with its default XNNPACK delegate and ``--threads``; onnxruntime
  with ``--threads`` intra-op threads (see :mod:`kcv.runtime.runners` for its options); Keras
  through a ``tf.function`` (``model.predict`` per image would add ~100 ms of overhead)
  with TensorFlow's own thread pools.
* **init ms**: from opening the file to the end of the first inference (load, graph
  optimization, tracing, allocation).
* **peak MB**: peak resident memory added by loading that format and running it on one
  image at a time (measured before the metric pass, whose stacked outputs are ours): Linux
  ``VmHWM`` (peak RSS) after the runs minus ``VmRSS`` before loading, with ``VmHWM`` reset
  first through ``/proc/self/clear_refs`` and memory freed by the previous row returned to
  the OS (glibc ``malloc_trim``) so that it is not silently reused. Shared libraries already
  loaded (TensorFlow is, for every row) are not counted, nor the one-time state of LiteRT and
  onnxruntime (each is warmed up on one file before measuring). ``None`` where the kernel
  does not allow the reset.

Timings from a shared machine are noisy; ``benchmarks/RESULTS.md`` says where each figure
was measured.
"""

from __future__ import annotations

import gc
import platform
import time
from pathlib import Path

import numpy as np

from kcv import runs
from kcv.errors import KcvError
from kcv.contracts import EXPORTS_DIR, MODEL_FILE
from kcv.evaluation.scores import task_metric
from kcv.export import report as export_report
from kcv.export.formats import FORMATS
from kcv.runtime import runners

WARMUP = 5


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_freed_memory() -> None:
    """Hand memory freed by the previous row back to the OS (glibc ``malloc_trim``), so
    that the next row's allocations show up in its RSS instead of reusing freed heap."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def time_runner(runner, image: np.ndarray, runs_: int) -> tuple[float, float]:
    """``(p50, p95)`` in ms of ``runs_`` batch-1 calls after :data:`WARMUP` warm-up calls."""
    batch = image[None]
    for _ in range(WARMUP):
        runner(batch)
    times = []
    for _ in range(runs_):
        t0 = time.perf_counter()
        runner(batch)
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def measure_latency(open_fn, image: np.ndarray, threads: int, runs_: int):
    """``(runner, timings)``: open with ``open_fn(threads)``, time batch-1 calls on ``image``,
    measure the memory added (see the module docstring)."""
    _release_freed_memory()
    can_peak = _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    runner = open_fn(threads)
    runner(image[None])
    init_ms = (time.perf_counter() - t0) * 1e3
    p50, p95 = time_runner(runner, image, runs_)
    hwm = _status_kb("VmHWM")  # before scoring: the stacked outputs are not the runtime's
    peak = round((hwm - rss0) / 1024, 1) if can_peak and hwm and rss0 else None
    return runner, {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "init_ms": round(init_ms, 1), "peak_mb": peak}


def measure(name: str, open_fn, images, targets, task, num_classes, threads: int, runs_: int) -> dict:
    """One benchmark row: open with ``open_fn(threads)``, score, time, measure memory."""
    runner, timings = measure_latency(open_fn, images[0], threads, runs_)
    probs = runner(images)
    metric_name, metric = task_metric(probs, targets, task, num_classes)
    del runner
    return {"format": name, "metric_name": metric_name, "metric": metric, **timings, "probs": probs}


def benchmark_file(path, images=(), threads: int = 2, runs_: int = 50) -> dict:
    """Size, batch-1 latency, init time and peak memory of one ``.tflite`` / ``.onnx`` file,
    without TensorFlow (``kcv benchmark FILE``): no run, so no metric column.

    Args:
        images: image files to time on (the first) and to run once each (all); none: a
            fixed random image of the file's input size.
    """
    from kcv.runtime.predict import load_image

    path = Path(path)
    kind = runners.SUFFIXES.get(path.suffix.lower())
    if kind not in ("tflite", "onnx"):
        raise KcvError(f"{path}: kcv benchmark takes a run, or a .tflite or .onnx file")
    if threads < 1 or runs_ < 1:
        raise KcvError("--threads and --runs must be at least 1")
    probe = runners.open_runner(path, threads=threads)  # one-line errors for missing or corrupt files
    h, w = probe.input_shape[:2]
    if images:
        if h is None or w is None:
            raise KcvError(f"{path}: the model accepts any input size; benchmark it within its run")
        batch = np.stack([load_image(p, (h, w))[0] for p in images])
    else:
        batch = np.random.default_rng(0).integers(0, 256, (1, h or 224, w or 224, 3)).astype(np.float32)
    probe(batch[:1])  # warm the runtime's one-time state (see _warm_runtimes)
    del probe
    runner, timings = measure_latency(lambda t: runners.open_runner(path, threads=t), batch[0], threads, runs_)
    runner(batch)
    return {"threads": threads, "runs": runs_, "samples": int(len(batch)), "batch": 1, "machine": _machine(),
            "rows": [{"format": kind, "file": str(path), "size_mb": round(_size(path) / 2**20, 4),
                      "metric_name": None, "metric": None, **timings}]}


def benchmark_run(run=None, formats=None, threads: int = 2, runs_: int = 50, samples: int = 200,
                  root=runs.DEFAULT_ROOT, log=print) -> dict:
    """Benchmark Keras and each verified export of a run; write ``report.json``/``report.md``.

    Args:
        formats: names (``keras`` and keys of :data:`FORMATS`); ``None`` = every verified one.
        threads: CPU threads for every runtime.
        runs_: timed calls per format.

    Returns:
        The benchmark section written into ``report.json``.
    """
    import tensorflow as tf

    if threads < 1 or runs_ < 1 or samples < 1:
        raise KcvError("--threads, --runs and --samples must be at least 1")
    run = runs.open_run(run, root)
    report = run.report or {"run": str(run.path), "formats": {}}
    chosen = _choose_formats(run, report, formats)
    # Keras uses TF's pools; match the thread count so the comparison is fair. TensorFlow
    # refuses once its runtime has started (e.g. a second benchmark in one process).
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        pass
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads() or "TF default (all cores)"
    images, targets = run.data_source().arrays("val", limit=samples)
    _warm_runtimes(chosen, images[:1], threads)
    rows = []
    for name, path in chosen:
        log(f"benchmarking {name} ({path.name}) ...")
        row = measure(name, lambda t, p=path: runners.open_runner(p, threads=t), images, targets,
                      run.task, run.num_classes, threads, runs_)
        row["size_mb"] = round(_size(path) / 2**20, 4)
        row["file"] = str(path.relative_to(run.path))
        rows.append(row)
    keras_row = next((r for r in rows if r["format"] == "keras"), None)
    reference = keras_row["probs"] if keras_row else None
    for row in rows:
        probs = row.pop("probs")
        if keras_row is not None:
            row["delta_points"] = round(100 * (row["metric"] - keras_row["metric"]), 3)
            row["max_abs_diff"] = float(np.max(np.abs(probs - reference)))
    section = {"threads": threads, "keras_threads": tf_threads, "runs": runs_, "samples": int(len(images)), "batch": 1,
               "machine": _machine(), "rows": rows}
    report["benchmark"] = section
    export_report.write(run.path, report)
    return section


def _warm_runtimes(chosen, image, threads) -> None:
    """Run one file of each runtime once before measuring, so that the first row of a
    runtime is not charged with loading its shared library and one-time global state."""
    seen = set()
    for _, path in chosen:
        kind = runners.kind_of(path)
        if kind not in seen and kind in ("tflite", "onnx"):
            seen.add(kind)
            runners.open_runner(path, threads=threads)(image)


def _choose_formats(run: runs.Run, report: dict, formats) -> list[tuple[str, Path]]:
    verified = {k: path for k, (path, _) in export_report.verified(run.path, report).items()}
    available = {"keras": run.path / MODEL_FILE, **verified}
    if formats is None:
        return list(available.items())
    unknown = [f for f in formats if f != "keras" and f not in FORMATS]
    if unknown:
        raise KcvError(f"--formats: unknown {', '.join(unknown)}; known: keras, {', '.join(FORMATS)}")
    missing = [f for f in formats if f not in available]
    if missing:
        raise KcvError(f"--formats: no verified {', '.join(missing)} export in {run.path}/{EXPORTS_DIR}; "
                       f"run `kcv export {' '.join('--' + m.replace('_', '-') for m in missing)}` first")
    return [(f, available[f]) for f in formats]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _machine() -> dict:
    import os

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version()}
