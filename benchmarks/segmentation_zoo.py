"""Acceptance experiments of the segmentation zoo on the built-in ``shapes`` data.

1. Each segmentation architecture trained on ``shapes`` (its ``kcv train`` defaults, or the
   schedule given) vs the majority-class baseline (every pixel = background).
2. FCN-32s / 16s / 8s on ONE schedule (same backbone, image size, epochs, lr, seed).
3. Dense CRF on the validation predictions of a coarse model (FCN-32s): mIoU before/after.
4. FCN pixel accuracy near label edges vs elsewhere (what the skips of 16s/8s are for).

Usage (the figures in docs/results.md / benchmarks/RESULTS.md came from the last command, which trained
the runs not present yet: 4.8 h of training for all 14 on the shared 2-core machine at load
averages 4–12, an estimated 1.5 h when idle):

    python benchmarks/segmentation_zoo.py --out /tmp/segzoo                  # the 7 defaults
    python benchmarks/segmentation_zoo.py --out /tmp/segzoo --only fcn32s,fcn16s,fcn8s --crf-run fcn32s
    python benchmarks/segmentation_zoo.py --out /tmp/segzoo --only unet,unet-resnet18,hypercolumn,\
deeplabv3plus,fcn32s,fcn16s,fcn8s,hypercolumn-lr1e-3-10ep,deeplabv3plus-rates6-12-18-lr1e-3-10ep,\
fcn32s-dropout0.5,fcn16s-dropout0.5,fcn8s-dropout0.5,fcn32s-320img-6ep,fcn32s-320img-6ep-dropout0.5 \
        --crf-run fcn32s,fcn32s-dropout0.5

Writes ``results.json`` and ``results.md`` under ``--out`` (runs in ``--out/runs``); a run
already present (``--out/runs/<name>/metrics.json``) is reused, so the script can resume.
Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# name -> (arch, TrainConfig overrides); {} = the architecture's `kcv train` defaults. The FCNs'
# defaults are one schedule (128 px, ResNet-18, 10 epochs, lr 2e-3) for all three.
EXPERIMENTS = {
    "unet": ("unet", {}),
    "unet-resnet18": ("unet", {"model_args": {"backbone": "resnet18"}}),
    "hypercolumn": ("hypercolumn", {}),
    "deeplabv3plus": ("deeplabv3plus", {}),
    "fcn32s": ("fcn32s", {}),
    "fcn16s": ("fcn16s", {}),
    "fcn8s": ("fcn8s", {}),
}
# What the defaults were chosen against (the earlier defaults, the paper's settings).
ABLATIONS = {
    "hypercolumn-lr1e-3-10ep": ("hypercolumn", {"lr": 1e-3, "epochs": 10}),
    "deeplabv3plus-rates6-12-18-lr1e-3-10ep": ("deeplabv3plus", {"lr": 1e-3, "epochs": 10,
                                                                 "model_args": {"atrous_rates": None}}),
    "fcn32s-dropout0.5": ("fcn32s", {"model_args": {"dropout": 0.5}}),
    "fcn16s-dropout0.5": ("fcn16s", {"model_args": {"dropout": 0.5}}),
    "fcn8s-dropout0.5": ("fcn8s", {"model_args": {"dropout": 0.5}}),
    # 120 steps: is dropout what holds FCN-32s at the baseline?
    "fcn32s-320img-6ep": ("fcn32s", {"data": "shapes:320", "epochs": 6}),
    "fcn32s-320img-6ep-dropout0.5": ("fcn32s", {"data": "shapes:320", "epochs": 6, "model_args": {"dropout": 0.5}}),
}


def majority_baseline(source) -> dict:
    """mIoU / pixel accuracy of predicting the most frequent training class everywhere."""
    from kcv.evaluation import scores

    _, masks = source.arrays("val")
    counts = np.bincount(masks[masks != 255].ravel(), minlength=source.num_classes)
    cm = scores.confusion_matrix(masks, np.full_like(masks, counts.argmax()), source.num_classes)
    report = scores.segmentation_report(cm, source.class_names)
    return {"val_miou": report["val_miou"], "val_pixel_accuracy": report["val_pixel_accuracy"]}


def train_one(name: str, arch: str, overrides: dict, root: Path, seed: int) -> dict:
    from kcv import runs
    from kcv.train import TrainConfig, train

    run_dir = root / name
    if not (run_dir / "metrics.json").is_file():
        cfg = TrainConfig(arch=arch, out=str(root), name=name, seed=seed, verbose=0,
                          **{k: v for k, v in overrides.items()})
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        run_dir = train(cfg)
        load = (load0 + os.getloadavg()[0]) / 2  # other jobs on the machine slow every figure in s
        runs.write_json(run_dir / "bench_load.json", {"loadavg_1min": round(load, 2)})
        print(f"{name}: trained in {time.perf_counter() - t0:.0f} s (load average ~{load:.1f})", flush=True)
    final = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    return {"arch": arch, "run": str(run_dir), "data": config["data"], "img_size": config["img_size"],
            "epochs": config["epochs"], "lr": config["lr"], "model_args": config["model_args"],
            "params": config.get("params"), "best_epoch": final.get("best_epoch"),
            "val_miou": final["val_miou"], "val_pixel_accuracy": final["val_pixel_accuracy"],
            "per_class_iou": final["per_class_iou"], "train_seconds": final.get("train_seconds"),
            "loadavg": load_of(run_dir)}


def load_of(run_dir: Path):
    path = run_dir / "bench_load.json"
    return json.loads(path.read_text())["loadavg_1min"] if path.is_file() else None


def boundary_accuracy(run_dir: Path, band: int = 3) -> dict:
    """Validation pixel accuracy of ``run_dir``'s best model within ``band`` px of a label edge
    (~14 % of the pixels at 128 px) and elsewhere: what finer skips should improve (FCN §4.2)."""
    import keras

    from kcv.data.pipeline import load_data

    config = json.loads((run_dir / "config.json").read_text())
    images, masks = load_data(config["data"], "segmentation", config["img_size"]).arrays("val")
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    pred = np.concatenate([np.asarray(model(images[i:i + 25].astype("float32"), training=False)).argmax(-1)
                           for i in range(0, len(images), 25)])
    edge = np.zeros(masks.shape, bool)
    edge[:, 1:] |= masks[:, 1:] != masks[:, :-1]
    edge[:, :-1] |= masks[:, 1:] != masks[:, :-1]
    edge[:, :, 1:] |= masks[:, :, 1:] != masks[:, :, :-1]
    edge[:, :, :-1] |= masks[:, :, 1:] != masks[:, :, :-1]
    padded, (h, w) = np.pad(edge, ((0, 0), (band, band), (band, band))), masks.shape[1:]
    near = np.any([padded[:, band + dy:band + dy + h, band + dx:band + dx + w]
                   for dy in range(-band, band + 1) for dx in range(-band, band + 1)], axis=0)
    right, valid = pred == masks, masks != 255
    return {"boundary_px_acc": float(right[near & valid].mean()), "interior_px_acc": float(right[~near & valid].mean())}


def crf_effect(run_dir: Path) -> dict:
    """Validation scores of ``run_dir``'s best model without and with the dense CRF
    (what ``kcv eval RUN`` and ``kcv eval RUN --crf`` print)."""
    from kcv.evaluation.evaluate import evaluate_run

    plain, _ = evaluate_run(run_dir)
    refined, _ = evaluate_run(run_dir, crf=True)
    keys = ("val_miou", "val_pixel_accuracy", "per_class_iou")
    return {"run": str(run_dir), "without": {k: plain[k] for k in keys}, "with_crf": {k: refined[k] for k in keys}}


def markdown(results: dict) -> str:
    base = results["baseline"]
    lines = ["| model | data | img | epochs | lr | model_args | val mIoU | val pixel acc. | train s | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|",
             *(f"| majority class (background) | shapes | {size} | – | – | – | {b['val_miou']:.3f} | "
               f"{b['val_pixel_accuracy']:.3f} | – | – |" for size, b in base.items())]
    order = [n for n in {**EXPERIMENTS, **ABLATIONS} if n in results["runs"]]
    for name in order:
        r = results["runs"][name]
        args = ", ".join(f"{k}={v}" for k, v in r["model_args"].items())
        lines.append(f"| {name} | {r.get('data', 'shapes')} | {r['img_size']} | {r['epochs']} | {r.get('lr', '')} | "
                     f"{args} | {r['val_miou']:.3f} | {r['val_pixel_accuracy']:.3f} | {r['train_seconds']} | "
                     f"{r.get('loadavg') or '–'} |")
    fcns = [n for n in order if "boundary_px_acc" in results["runs"][n]]
    if fcns:
        lines += ["", "FCN pixel accuracy within 3 px of a label edge and elsewhere (validation split):", "",
                  "| run | val mIoU | boundary px acc. | interior px acc. |", "|---|---|---|---|"]
        for name in fcns:
            r = results["runs"][name]
            lines.append(f"| {name} | {r['val_miou']:.3f} | {r['boundary_px_acc']:.3f} | {r['interior_px_acc']:.3f} |")
    if results.get("crf"):
        lines += ["", "Dense CRF (`kcv eval RUN` vs `kcv eval RUN --crf`, validation split):", "",
                  "| run | val mIoU | + CRF | val pixel acc. | + CRF |", "|---|---|---|---|---|"]
        for name, c in results["crf"].items():
            a, b = c["without"], c["with_crf"]
            lines.append(f"| {name} | {a['val_miou']:.3f} | {b['val_miou']:.3f} | {a['val_pixel_accuracy']:.3f} | "
                         f"{b['val_pixel_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/out/segmentation_zoo")
    parser.add_argument("--only", default=None,
                        help="comma-separated experiment names (default: all EXPERIMENTS; ABLATIONS by name)")
    parser.add_argument("--crf-run", default="fcn32s",
                        help="comma-separated experiments whose models the CRF refines ('' = none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import kcv  # noqa: F401
    from kcv import runs
    from kcv.data.pipeline import load_data

    out = Path(args.out)
    root = out / "runs"
    root.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(EXPERIMENTS)
    unknown = [n for n in names if n not in {**EXPERIMENTS, **ABLATIONS}]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: choose from {', '.join({**EXPERIMENTS, **ABLATIONS})}")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    results["baseline"] = {str(s): majority_baseline(load_data("shapes", "segmentation", s)) for s in (64, 128)}
    for name in names:
        arch, overrides = {**EXPERIMENTS, **ABLATIONS}[name]
        results["runs"][name] = train_one(name, arch, overrides, root, args.seed)
        runs.write_json(results_path, results)
    for name in names:  # boundary figures of every FCN (cheap: inference only)
        if name.startswith("fcn") and "boundary_px_acc" not in results["runs"][name]:
            results["runs"][name].update(boundary_accuracy(root / name))
    results["crf"] = {name: crf_effect(root / name) for name in filter(None, args.crf_run.split(","))
                      if (root / name / "metrics.json").is_file()}
    runs.write_json(results_path, results)
    runs.write_text(out / "results.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
