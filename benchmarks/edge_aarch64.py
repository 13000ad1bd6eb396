"""The Python half of ``benchmarks/edge_aarch64.sh``: the same ``.tflite`` and ``.onnx``
files run by ``kcv predict`` on x86 and on arm64, compared.

Subcommands (the shell script calls them in this order):

* ``prepare DATA`` (x86, needs TensorFlow): trains a classification run (ResNet-18, 32 px)
  and a segmentation run (U-Net, 8 base filters, 64 px) on the built-in shapes data,
  exports their fp32 and int8 TFLite and ONNX files and writes held-out validation images
  as PNG files under ``DATA``.
* ``predict DATA OUT`` (x86 and arm64, TensorFlow-free): ``kcv predict`` on every file, one
  thread, run in-process through the CLI (JSON lines and masks) with the runner tapped so
  the raw probabilities of the same calls are kept too (``OUT/<run>_<file>.npz``, for
  max |Δprob|). One inference per image: under emulation a second pass doubled the time.
* ``compare DATA X86 ARM64...``: top-1 / pixel agreement and max |Δprob| of each arm64
  folder against x86, as a Markdown table.

Latency is not reported: under qemu user-mode emulation it measures the emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

RUNS = {  # name: (task, TrainConfig overrides)
    "resnet18": ("classification", dict(arch="resnet18", data="shapes:1600", epochs=10, img_size=32, batch_size=32)),
    "unet": ("segmentation", dict(arch="unet", data="shapes:400", epochs=6, img_size=64, batch_size=16,
                                  model_args={"base_filters": 8})),
}
FILES = ("model_fp32.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx")
EXPORT_FLAGS = ["--tflite", "--int8", "--onnx", "--onnx-int8"]
# 100 images: the fp32 ResNet-18 costs ~1.3 s an image under qemu on a busy 2-core host.
VAL_IMAGES = 100


def prepare(data: Path) -> None:
    """Train, export and write validation images (x86, with TensorFlow)."""
    from PIL import Image

    import kcv  # noqa: F401  (registers the architectures)
    from kcv.cli import main as cli
    from kcv.data import shapes
    from kcv.train import TrainConfig, train

    data.mkdir(parents=True, exist_ok=True)
    for name, (task, overrides) in RUNS.items():
        run_dir = data / "runs" / name
        if not (run_dir / "model.keras").exists():
            run_dir = train(TrainConfig(out=str(data / "runs"), name=name, verbose=0, **overrides))
        if not all((run_dir / "exports" / f).exists() for f in FILES):
            try:  # --allow-drop: the point here is arm64 vs x86 on the same file, not the gate
                cli(["export", str(run_dir), *EXPORT_FLAGS, "--allow-drop"])
            except SystemExit as e:
                if e.code:
                    raise
        images, _ = shapes.make_split(VAL_IMAGES, overrides["img_size"], task, "val")
        folder = data / "val" / name
        shutil.rmtree(folder, ignore_errors=True)  # a rerun with fewer images leaves none behind
        folder.mkdir(parents=True)
        for i, img in enumerate(images):
            Image.fromarray(img).save(folder / f"val{i:03d}.png")
        (data / "runs" / f"{name}.path").write_text(str(run_dir))


def predict(data: Path, out: Path, threads: int = 1) -> None:
    """``kcv predict`` on every file (in-process CLI), keeping the probabilities it computed."""
    import io

    from kcv.runtime import runners
    from kcv_entry import main as kcv

    out.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        run_dir = Path((data / "runs" / f"{name}.path").read_text())
        if not run_dir.is_absolute() or not run_dir.exists():  # the data folder moved (chroot)
            run_dir = data / "runs" / run_dir.name
        images = data / "val" / name
        for file in FILES:
            tag = f"{name}_{Path(file).stem}_{Path(file).suffix[1:]}"
            calls, stdout = [], io.StringIO()
            with _tapped(runners, calls), contextlib.redirect_stdout(stdout):
                try:
                    kcv(["predict", str(run_dir / "exports" / file), str(images), "--top-k", "1",
                         "--threads", str(threads), "--out", str(out / f"{tag}_masks")])
                except SystemExit as e:
                    if e.code:
                        raise
            lines = stdout.getvalue().splitlines()
            probs = np.concatenate(calls)[-len(lines):]  # one call per image, after any probe
            (out / f"{tag}.jsonl").write_text("\n".join(lines) + "\n")
            np.savez_compressed(out / f"{tag}.npz", probs=probs)
            print(f"{tag}: {len(lines)} images", file=sys.stderr)


class _Tap:
    """A runner that appends every output it returns to ``calls`` (and is otherwise the runner)."""

    def __init__(self, runner, calls: list):
        self._runner, self._calls = runner, calls

    def __getattr__(self, attr):
        return getattr(self._runner, attr)

    def __call__(self, images):
        probs = self._runner(images)
        self._calls.append(np.asarray(probs))
        return probs


@contextlib.contextmanager
def _tapped(runners, calls: list):
    """``runners.open_runner`` (what ``kcv predict`` opens files with) returns tapped runners."""
    real = runners.open_runner
    runners.open_runner = lambda *args, **kwargs: _Tap(real(*args, **kwargs), calls)
    try:
        yield
    finally:
        runners.open_runner = real


def compare(data: Path, x86: Path, arms: list[Path]) -> str:
    """The Markdown table of each arm64 folder (``arm64-<qemu cpu>``) against x86."""
    rows = ["| run | file | emulated CPU | images | kcv predict: same top-1 / mask pixel | argmax (probs) "
            "| max abs Δprob |", "|---|---|---|---:|---:|---:|---:|"]
    for name, (task, _) in RUNS.items():
        for file in FILES:
            tag = f"{name}_{Path(file).stem}_{Path(file).suffix[1:]}"
            for arm in arms:
                a, b = (np.load(d / f"{tag}.npz")["probs"] for d in (x86, arm))
                same = _cli_agreement(task, tag, x86, arm)
                cpu = arm.name.removeprefix("arm64-")
                rows.append(f"| {name} ({task}) | {file} | {cpu} | {len(a)} | {_share(same)} | "
                            f"{_share(a.argmax(-1) == b.argmax(-1))} | {np.abs(a - b).max():.1e} |")
    return "\n".join(rows)


def _cli_agreement(task: str, tag: str, x86: Path, arm: Path) -> np.ndarray:
    """Per image (classification: top-1 label) or per pixel (segmentation: mask PNG), equal or not."""
    from PIL import Image

    if task == "classification":
        top = [[json.loads(line)["top_k"][0]["label"] for line in (d / f"{tag}.jsonl").read_text().splitlines()]
               for d in (x86, arm)]
        return np.array([p == q for p, q in zip(*top, strict=True)])
    masks = sorted((x86 / f"{tag}_masks").glob("*_mask.png"))
    return np.concatenate([(np.asarray(Image.open(m)) == np.asarray(Image.open(arm / f"{tag}_masks" / m.name))).ravel()
                           for m in masks])


def _share(same: np.ndarray) -> str:
    """``100.00 %`` plus the count that differs, so 1 in 100 images reads as such."""
    return f"{same.mean():.2%}" + ("" if same.all() else f" ({int((~same).sum())} differ)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare").add_argument("data", type=Path)
    p = sub.add_parser("predict")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("compare")
    for arg in ("data", "x86"):
        c.add_argument(arg, type=Path)
    c.add_argument("arm", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.data)
    elif args.cmd == "predict":
        predict(args.data, args.out, args.threads)
    else:
        print(compare(args.data, args.x86, args.arm))


if __name__ == "__main__":
    main()
