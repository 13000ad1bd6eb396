"""The Python half of ``benchmarks/edge_aarch64.sh``: the same ``.tflite`` files run by
``kcv predict`` on x86 and on arm64, compared.

Subcommands (the shell script calls them in this order):

* ``prepare DATA`` (x86, needs TensorFlow): trains a classification run (ResNet-18) and a
  segmentation run (U-Net) on the built-in shapes data, exports their fp32 and int8
  TFLite files and writes held-out validation images as PNG files under ``DATA``.
* ``predict DATA OUT`` (x86 and arm64, TensorFlow-free): ``kcv predict`` on every file
  (JSON lines and masks, through the CLI), plus the raw probabilities of the same files
  through ``kcv.runtime`` (``OUT/<run>_<file>.npz``) for max |Δprob|.
* ``compare DATA X86 ARM64``: top-1 / pixel agreement and max |Δprob|, as a Markdown table.

Latency is not reported: under qemu user-mode emulation it measures the emulator.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RUNS = {  # name: (task, TrainConfig overrides)
    "resnet18": ("classification", dict(arch="resnet18", data="shapes:1600", epochs=10, img_size=32, batch_size=32)),
    "unet": ("segmentation", dict(arch="unet", data="shapes:400", epochs=6, img_size=64, batch_size=16,
                                  model_args={"base_filters": 8})),
}
FILES = ("model_fp32.tflite", "model_int8.tflite")
VAL_IMAGES = 120


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
        if not (run_dir / "exports" / "model_int8.tflite").exists():
            run_dir = train(TrainConfig(out=str(data / "runs"), verbose=0, **overrides))
            try:  # --allow-drop: the point here is arm64 vs x86 on the same file, not the gate
                cli(["export", str(run_dir), "--tflite", "--int8", "--allow-drop"])
            except SystemExit as e:
                if e.code:
                    raise
        images, _ = shapes.make_split(VAL_IMAGES, overrides["img_size"], task, "val")
        folder = data / "val" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            Image.fromarray(img).save(folder / f"val{i:03d}.png")
        (data / "runs" / f"{name}.path").write_text(str(run_dir))


def predict(data: Path, out: Path) -> None:
    """``kcv predict`` on every file, and the raw probabilities through kcv.runtime."""
    from kcv.runtime.predict import list_images, load_image, open_predictor

    out.mkdir(parents=True, exist_ok=True)
    for name, (task, _) in RUNS.items():
        run_dir = Path((data / "runs" / f"{name}.path").read_text())
        if not run_dir.is_absolute() or not run_dir.exists():  # the data folder moved (chroot)
            run_dir = data / "runs" / run_dir.name
        images = list_images([data / "val" / name])
        for file in FILES:
            model = run_dir / "exports" / file
            tag = f"{name}_{Path(file).stem}"
            cmd = [sys.executable, "-m", "kcv_entry", "predict", str(model), str(data / "val" / name),
                   "--top-k", "1", "--out", str(out / f"{tag}_masks")]
            lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            (out / f"{tag}.jsonl").write_text(lines)
            predictor = open_predictor(model)
            probs = np.stack([predictor.runner(load_image(p, predictor.img_size)[0][None])[0] for p in images])
            np.savez_compressed(out / f"{tag}.npz", probs=probs)
            print(f"{tag}: {len(images)} images", file=sys.stderr)


def compare(data: Path, x86: Path, arm: Path) -> str:
    """The Markdown table of arm64 vs x86 agreement."""
    from PIL import Image

    rows = ["| run | file | images | top-1 / pixel agreement (kcv predict) | argmax agreement (probs) "
            "| max abs Δprob |", "|---|---|---:|---:|---:|---:|"]
    for name, (task, _) in RUNS.items():
        for file in FILES:
            tag = f"{name}_{Path(file).stem}"
            a, b = (np.load(d / f"{tag}.npz")["probs"] for d in (x86, arm))
            if task == "classification":
                top = [[json.loads(line)["top_k"][0]["label"] for line in (d / f"{tag}.jsonl").read_text().splitlines()]
                       for d in (x86, arm)]
                cli_agree = np.mean([p == q for p, q in zip(*top)])
            else:
                masks = sorted((x86 / f"{tag}_masks").glob("*_mask.png"))
                same = [np.asarray(Image.open(m)) == np.asarray(Image.open(arm / f"{tag}_masks" / m.name))
                        for m in masks]
                cli_agree = float(np.mean(np.concatenate([s.ravel() for s in same])))
            rows.append(f"| {name} ({task}) | {file} | {len(a)} | {cli_agree:.2%} | "
                        f"{np.mean(a.argmax(-1) == b.argmax(-1)):.2%} | {np.abs(a - b).max():.2e} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare").add_argument("data", type=Path)
    p = sub.add_parser("predict")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    for arg in ("data", "x86", "arm"):
        c.add_argument(arg, type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.data)
    elif args.cmd == "predict":
        predict(args.data, args.out)
    else:
        print(compare(args.data, args.x86, args.arm))


if __name__ == "__main__":
    main()
