"""Input pipeline: peak RSS and images/sec of ``kcv train`` streaming JPEGs from disk
(``--cache none``) against the same run on the decoded set held in memory (``--cache
memory``: in-memory uint8 arrays, the pipeline kcv had before streaming), for 1k / 4k / 16k
images.

One command measures everything and rewrites its section of ``benchmarks/RESULTS.md``::

    python benchmarks/input_pipeline.py                       # 1k/4k/16k memory + speed
    python benchmarks/input_pipeline.py --sizes 1000,4000 --repeats 1
    python benchmarks/input_pipeline.py --caches none --skip-speed   # streaming memory only

- Memory: ``kcv train --arch lenet5 --img-size 224 --epochs 1`` (a small model, so the
  data dominates), peak RSS of the whole process (``/usr/bin/time -f %M``); and one epoch of
  the training stream alone (no model: the data's share is all there is), its peak VmHWM.
- Speed: ``kcv train --arch resnet18 --img-size 128 --epochs 2`` on the first
  ``--speed-images`` images; images/sec of epoch 2 from ``history.csv`` (epoch 1 traces),
  the two caches interleaved (A B A B ...) ``--repeats`` times so a shared machine's load
  falls on both alike; medians reported, with every run and its load average.

The JPEGs (224 px, quality 90, shapes images; 2,000 distinct, the rest copies as separate
files) are written once under
``--work``; the sizes are CSV lists (``csv:`` layout) over one folder, with the same 64
validation images each. Every run is its own process. A shared machine makes the speed
figures noisy: the load average before each run is recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- input_pipeline:begin -->", "<!-- input_pipeline:end -->"
VAL = 64
UNIQUE = 2000  # distinct images; the rest are copies (separate files, read and decoded alike)


def write_jpegs(folder: Path, n: int, size: int = 224) -> None:
    """``n`` training + ``VAL`` validation JPEGs of shapes images (reused when present)."""
    import numpy as np
    from PIL import Image

    from kcv.data import shapes

    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", VAL)):
        for i in range(count):
            path = folder / f"{split}{i:05d}.jpg"
            if path.exists():
                continue
            if i >= UNIQUE:  # a copy: drawing 16k shapes takes longer than the benchmark
                for ext in (".jpg", ".label"):
                    shutil.copyfile(folder / f"{split}{i % UNIQUE:05d}{ext}", folder / f"{split}{i:05d}{ext}")
                continue
            img, label = shapes.make_sample(1, split, i, size, "classification")
            Image.fromarray(np.asarray(img)).save(path, quality=90)
            (folder / f"{split}{i:05d}.label").write_text(shapes.SHAPE_NAMES[label])


def write_list(folder: Path, n: int) -> Path:
    out = folder.parent / f"list_{n}.csv"
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for split, count in (("train", n), ("val", VAL)):
            for i in range(count):
                label = (folder / f"{split}{i:05d}.label").read_text()
                w.writerow([f"{folder.name}/{split}{i:05d}.jpg", label, split])
    return out


def run_train(listing: Path, work: Path, name: str, arch: str, img: int, epochs: int, cache: str) -> dict:
    """One ``kcv train`` process: ``{peak_rss_mb, images_per_sec (last epoch), wall_s, load}``."""
    out = work / "runs"
    argv = [sys.executable, "-m", "kcv", "train", "--arch", arch, "--data", f"csv:{listing}", "--img-size", str(img),
            "--epochs", str(epochs), "--batch-size", "32", "--augment", "none", "--cache", cache,
            "--out", str(out), "--name", name, "--quiet"]
    load = os.getloadavg()[0]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %e", *argv], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: kcv train failed\n{proc.stderr[-3000:]}")
    rss_kib, wall = proc.stderr.strip().splitlines()[-1].split()
    rows = list(csv.DictReader((out / name / "history.csv").open()))
    import shutil

    shutil.rmtree(out / name)
    return {"peak_rss_mb": round(int(rss_kib) / 1024, 1), "images_per_sec": float(rows[-1]["images_per_sec"]),
            "wall_s": float(wall), "load": round(load, 1)}


PIPELINE = """
import json, sys, time
from pathlib import Path
def hwm():  # VmHWM: the peak resident set of this process (KiB)
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
from kcv.data.pipeline import load_data
source = load_data("csv:" + sys.argv[1], "classification", 224).cached(sys.argv[2])
loaded = hwm()
t0 = time.perf_counter()
n = sum(len(y) for _, y in source.train_stream(32, seed=0, epochs=1))
print(json.dumps({"peak_rss_mb": round(hwm() / 1024, 1), "load_peak_mb": round(loaded / 1024, 1),
                  "images_per_sec": round(n / (time.perf_counter() - t0), 1)}))
"""


def run_pipeline(listing: Path, cache: str) -> dict:
    """One epoch of the training stream alone (224 px, batch 32, no model) in a fresh process:
    ``{peak_rss_mb, load_peak_mb (after load_data's check of every file), images_per_sec,
    load}``. Without a model the data's share of the memory is all there is to see."""
    load = os.getloadavg()[0]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", PIPELINE, str(listing), cache],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline {listing} {cache}: failed\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load": round(load, 1)}


def machine() -> str:
    import keras
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__}")


def _growth(rows: dict, key: str) -> str:
    sizes = list(rows)
    a, b = rows[sizes[0]][key]["peak_rss_mb"], rows[sizes[-1]][key]["peak_rss_mb"]
    return (f"peak RSS at {sizes[-1]:,} images is {100 * (b - a) / a:+.1f} % of that at {sizes[0]:,} "
            f"(acceptance: within 10 %)")


def table(memory: dict, speed: dict, args) -> str:
    caches = args.caches.split(",")
    lines = [f"Machine: {machine()}.", ""]
    for kind, what in (("stream", "one epoch of `DataSource.train_stream` alone (224 px, batch 32, no model), "
                                  "VmHWM"),
                       ("train", "`kcv train --arch lenet5 --img-size 224 --epochs 1 --batch-size 32 "
                                 "--augment none`, `/usr/bin/time -f %M`")):
        rows = {n: r[kind] for n, r in memory.items() if kind in r}
        if not rows:
            continue
        lines += [f"Peak RSS, {what}, on N JPEGs (+{VAL} validation):", "",
                  "| images | " + " | ".join(f"--cache {c}: peak RSS | {c}: img/s" for c in caches) + " | load avg |",
                  "|---:|" + "---:|---:|" * len(caches) + "---:|"]
        for n, r in rows.items():
            lines.append(f"| {n:,} | " + " | ".join(f"{r[c]['peak_rss_mb']:,.0f} MB | {r[c]['images_per_sec']:.0f}"
                                                  for c in caches)
                         + f" | {'/'.join(str(r[c]['load']) for c in caches)} |")
        if len(rows) > 1 and "none" in caches:
            lines += ["", f"Streaming ({kind}): {_growth(rows, 'none')}.", ""]
    if speed:
        med = {k: statistics.median(r["images_per_sec"] for r in v) for k, v in speed.items()}
        lines += [f"Speed, `kcv train --arch resnet18 --img-size 128 --batch-size 32 --augment none`, "
                  f"{args.speed_images:,} JPEGs, images/sec of epoch 2, {args.repeats} runs each, interleaved "
                  "(none, memory, none, memory, ...):", "",
                  "| cache | median images/sec | runs | load avg at each start |", "|---|---:|---|---|"]
        for k, v in speed.items():
            lines.append(f"| {k} | {med[k]:.1f} | {', '.join(str(r['images_per_sec']) for r in v)} | "
                         f"{', '.join(str(r['load']) for r in v)} |")
        lines += ["", f"Streaming costs {100 * (1 - med['none'] / med['memory']):.1f} % images/sec against "
                      "in-memory arrays, by the medians (acceptance: at most 5 %)."]
    return "\n".join(lines)


def write_results(text: str) -> None:
    body = RESULTS.read_text() if RESULTS.exists() else ""
    section = f"{BEGIN}\n## Input pipeline: streaming from disk vs in memory\n\n{text}\n{END}"
    if BEGIN in body:
        body = body[:body.index(BEGIN)] + section + body[body.index(END) + len(END):]
    else:
        body = body.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,4000,16000")
    p.add_argument("--speed-images", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", default="/tmp/kcv-input-bench")
    p.add_argument("--caches", default="none,memory", help="caches to measure memory with")
    p.add_argument("--memory", default="stream,train",
                   help="stream (the training stream alone), train (kcv train), both, or none")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in args.memory.split(",") if k in ("stream", "train")]
    work = Path(args.work)
    folder = work / "jpegs"
    write_jpegs(folder, max(sizes + [args.speed_images]))
    memory = {}
    for n in sizes if kinds else []:
        listing = write_list(folder, n)
        memory[n] = {}
        for kind in kinds:
            memory[n][kind] = {c: run_pipeline(listing, c) if kind == "stream" else
                               run_train(listing, work, f"mem-{c}-{n}", "lenet5", 224, 1, c)
                               for c in args.caches.split(",")}
            print(n, kind, json.dumps(memory[n][kind]), flush=True)
    speed = {"none": [], "memory": []}
    if not args.skip_speed:
        listing = write_list(folder, args.speed_images)
        for r in range(args.repeats):
            for c in ("none", "memory"):
                speed[c].append(run_train(listing, work, f"speed-{c}-{r}", "resnet18", 128, 2, c))
                print("speed", c, json.dumps(speed[c][-1]), flush=True)
    text = table(memory, speed if not args.skip_speed else {}, args)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
