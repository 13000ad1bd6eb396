"""Acceptance experiments of the data-efficient learning issue, on the built-in shapes data.

1. Self-training with few labels: 10 labelled images per class (30 in all) + 3000
   unlabeled images (the shapes ``unlabeled`` split). ``kcv self-train`` (Noisy Student,
   hard pseudo-labels) against labels-only training of the same architecture: round 0
   (the teacher, labels only) and a labels-only run trained for as many steps as a
   student, with the students' noise. With 30 images this CNN stays at chance from
   scratch, so all of them start from a backbone pretrained on another task (five other
   shapes, drawn the same way, with plenty of labels) - transfer learning first.
2. Knowledge distillation: a teacher trained on all 3000 labelled images; a 4x narrower
   student trained on 300 labels, from scratch vs ``--teacher`` (same schedule), and with
   3000 more unlabeled images that get only the distillation term (``--unlabeled``).

Every run scores on the same 600 validation images (the shapes ``val`` split). The model
is a small VGG-style CNN registered by this script only (three stages of two conv-BN-ReLU
and a max-pool, global average pool, dropout, linear; ``width`` = first stage's filters):
from-scratch CNNs need ~500 optimizer steps on shapes, and this one takes ~10 s per 1000
images on 2 CPU cores at 32 px.

    python benchmarks/data_efficient.py --seeds 0,1 --ablation   # what RESULTS.md shows
    python benchmarks/data_efficient.py --only distill            # one experiment, one seed

About 13 minutes per seed (both experiments) and 6 more for ``--ablation`` on the shared
2-core machine.

Results go to stdout and to ``benchmarks/RESULTS.md`` between the markers
``<!-- data_efficient:begin -->`` / ``<!-- data_efficient:end -->``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kcv  # noqa: E402,F401
from kcv import registry, runs  # noqa: E402
from kcv.data import shapes  # noqa: E402
from kcv.layers import conv_bn_act, normalized_input  # noqa: E402
from kcv.train import TrainConfig, train  # noqa: E402
from kcv.train.self_training import SelfTrainConfig, self_train, summary_table  # noqa: E402

ARCH = "bench_cnn"
NOISE = "flip,crop=0.8,randaugment=2x9"  # kcv self-train's default student noise
RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- data_efficient:begin -->", "<!-- data_efficient:end -->"


def bench_cnn(num_classes, input_shape=(32, 32, 3), width=16, dropout=0.2):
    """Three (conv-BN-ReLU x2, max-pool) stages, global average pool, dropout, linear."""
    inputs, x = normalized_input(input_shape)
    for i, filters in enumerate((width, 2 * width, 4 * width)):
        x = conv_bn_act(x, filters, 3, name=f"cnn_s{i}a")
        x = conv_bn_act(x, filters, 3, name=f"cnn_s{i}b")
        x = keras.layers.MaxPooling2D(2, name=f"cnn_s{i}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="cnn_gap")(x)
    x = keras.layers.Dropout(dropout, name="cnn_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="cnn")


def register_bench_cnn() -> None:
    """Register ``bench_cnn`` as ``ARCH`` (benchmarks only; kcv's registry never lists it)."""
    registry._ensure_loaded()
    registry.register(ARCH, task="classification", family="bench", min_size=16,
                      train_defaults={"img_size": 32, "epochs": 10, "batch_size": 32, "lr": 2e-3})(bench_cnn)


def write_folder(root: Path, per_class: int, size: int, repeat: int = 1, n_val: int | None = None,
                 transform=None) -> Path:
    """``root/train/<class>/`` with the first ``per_class`` shapes training images of each
    class (each written ``repeat`` times: a longer epoch, the same images), ``root/val/<class>/``
    with the first ``n_val`` shapes validation images (default: all 600). ``transform(image,
    split, index)`` (e.g. ``benchmarks/learn_study.py``'s harder variant) changes each image
    before it is written."""
    transform = transform or (lambda img, split, i: img)
    images, labels = shapes.make_split(per_class * 12, size, "classification", "train")
    count = {c: 0 for c in range(3)}
    for i, (img, lab) in enumerate(zip(images, labels)):
        if count[lab] < per_class:
            d = root / "train" / shapes.SHAPE_NAMES[lab]
            d.mkdir(parents=True, exist_ok=True)
            img = transform(img, "train", i)
            for k in range(repeat):
                Image.fromarray(img).save(d / f"t{count[lab]:04d}_{k:02d}.png")
            count[lab] += 1
    if min(count.values()) < per_class:
        raise RuntimeError("not enough images of some class; raise the pool")
    images, labels = shapes.make_split(n_val or shapes.DEFAULT_SIZES["classification"][1], size,
                                       "classification", "val")
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = root / "val" / shapes.SHAPE_NAMES[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(transform(img, "val", i)).save(d / f"v{i:04d}.png")
    return root


OTHER_SHAPES = ("cross", "ellipse", "pentagon", "rectangle", "star")


def _other_mask(rng, kind: str, size: int):
    """A randomly placed, sized and rotated shape that ``shapes`` never draws."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    r = rng.uniform(0.18, 0.3) * size
    cx, cy = rng.uniform(r, size - r, 2)
    theta = rng.uniform(0, 2 * np.pi)
    u = np.cos(theta) * (xx - cx) + np.sin(theta) * (yy - cy)
    v = -np.sin(theta) * (xx - cx) + np.cos(theta) * (yy - cy)
    if kind == "cross":
        w = r / 3
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    if kind == "ellipse":
        return (u / r) ** 2 + (v / (0.5 * r)) ** 2 <= 1
    if kind == "rectangle":
        return (np.abs(u) <= 0.95 * r) & (np.abs(v) <= 0.45 * r)
    if kind == "pentagon":
        inside = np.ones_like(u, dtype=bool)
        for k in range(5):
            a = 2 * np.pi * k / 5
            inside &= np.cos(a) * u + np.sin(a) * v <= r * np.cos(np.pi / 5)
        return inside
    # five-pointed star: the radius swings between r and 0.4 r five times around the centre
    phase = (np.arctan2(v, u) % (2 * np.pi / 5)) / (2 * np.pi / 5)
    return np.hypot(u, v) <= r * (0.4 + 0.6 * np.abs(1 - 2 * phase))


def write_other_shapes(root: Path, n: int, size: int) -> Path:
    """A classification folder of five shapes that are NOT in ``shapes`` (cross, ellipse,
    pentagon, rectangle, star), drawn like ``shapes`` (textured backgrounds, random
    colours): the source task of the transfer, with plenty of labels."""
    for split, count, salt in (("train", n, 0), ("val", max(50, n // 5), 1)):
        for i in range(count):
            rng = np.random.default_rng([1234, salt, i])
            kind = OTHER_SHAPES[i % len(OTHER_SHAPES)]
            img = shapes._background(rng, size)
            m = _other_mask(rng, kind, size)
            img[m] = shapes._shape_colour(rng, img.mean(axis=(0, 1))) + rng.normal(0, 6, (int(m.sum()), 3))
            d = root / split / kind
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i:05d}.png")
    return root


def pretrain_backbone(work: Path, seed: int, args, width: int = 16) -> Path:
    """``bench_cnn`` (``width``) trained on the five other shapes: the backbone the few-label
    runs start from (``--pretrained``; matched by layer name, the 5-class head is not copied)."""
    data = work / "other_shapes"
    if not data.exists():
        write_other_shapes(data, args.pretrain_images, args.img_size)
    name = f"source_s{seed}" if width == 16 else f"source_w{width}_s{seed}"
    return train(TrainConfig(arch=ARCH, data=str(data), img_size=args.img_size, epochs=args.pretrain_epochs,
                             batch_size=32, lr=2e-3, seed=seed, out=str(work), name=name,
                             model_args={"width": width}, verbose=args.verbose))


def accuracy(run_dir) -> float:
    return float(runs.read_json(Path(run_dir) / "metrics.json")["val_accuracy"])


def steps(run_dir) -> int:
    """Optimiser steps of a finished run (:func:`kcv.train.distill.optimiser_steps`)."""
    from kcv.train.distill import optimiser_steps

    return optimiser_steps(runs.load_config(run_dir))


def self_training(work: Path, seed: int, args) -> dict:
    data = write_folder(work / f"few_{seed}", 10, args.img_size)
    source = pretrain_backbone(work, seed, args)
    few = dict(arch=ARCH, data=str(data), img_size=args.img_size, batch_size=10, lr=2e-3, seed=seed,
               out=str(work), model_args={"width": 16}, pretrained=str(source), backbone_lr_mult=0.1,
               verbose=args.verbose)
    base = TrainConfig(**few, epochs=args.teacher_epochs, name=f"selftrain_s{seed}")
    t0 = time.perf_counter()
    run = self_train(SelfTrainConfig(base, unlabeled=f"shapes:{args.unlabeled}", rounds=args.rounds,
                                     threshold=args.threshold, student_epochs=args.student_epochs))
    minutes = (time.perf_counter() - t0) / 60
    rows = runs.load_config(run)["self_training"]["summary"]
    student_steps = steps(rows[-1]["run"])
    # Labels only, as many steps as one student and with the students' noise: is the gain
    # more than a longer, noisier schedule? (The 30 images written 33 times: 99 steps an
    # epoch, so validation runs every 99 steps rather than every 3.)
    repeated = write_folder(work / f"few_x33_{seed}", 10, args.img_size, repeat=33)
    long = train(TrainConfig(**{**few, "data": str(repeated)}, epochs=max(1, round(student_steps / 99)),
                             augment=NOISE, name=f"labels_only_long_s{seed}"))
    return {"seed": seed, "rows": rows, "labels_only": rows[0]["val_accuracy"],
            "labels_only_long": accuracy(long), "long_steps": steps(long), "student_steps": student_steps,
            "self_train": rows[-1]["val_accuracy"], "minutes": minutes,
            "source_accuracy": accuracy(source)}


ABLATIONS = (("`--threshold 0.7`", dict(threshold=0.7)),
             ("`--soft`", dict(soft=True)),
             ("`--noise flip,crop=0.8` (no RandAugment)", dict(noise="flip,crop=0.8")),
             ("`--threshold 0 --soft --no-balance` (every image, the teacher's probabilities)",
              dict(threshold=0.0, soft=True, balance=False)))


def ablation(work: Path, seed: int, args, result: dict) -> list:
    """One student round from the same round-0 teacher, changing one option at a time."""
    teacher = Path(result["rows"][0]["run"])
    few = runs.load_config(teacher)
    base = TrainConfig(arch=ARCH, data=few["data"], img_size=args.img_size, batch_size=10, lr=2e-3, seed=seed,
                       out=str(work), model_args={"width": 16}, pretrained=few["pretrained"],
                       backbone_lr_mult=0.1, verbose=args.verbose)
    rows = [("as above (`--threshold 0.5`, hard, balanced, RandAugment)", result["rows"][1])]
    for i, (label, change) in enumerate(ABLATIONS):
        options = {"threshold": args.threshold, "student_epochs": args.student_epochs, **change}
        run = self_train(SelfTrainConfig(dataclasses.replace(base, name=f"ablation{i}_s{seed}"),
                                         unlabeled=f"shapes:{args.unlabeled}", rounds=1,
                                         teacher=str(teacher), **options))
        rows.append((label, runs.load_config(run)["self_training"]["summary"][1]))
    return rows


def distillation(work: Path, seed: int, args) -> dict:
    data = write_folder(work / f"distil_{seed}", 100, args.img_size)
    common = dict(img_size=args.img_size, lr=2e-3, seed=seed, out=str(work), verbose=args.verbose)
    teacher = train(TrainConfig(arch=ARCH, data="shapes", epochs=args.big_teacher_epochs, batch_size=32,
                                name=f"teacher_s{seed}", model_args={"width": 32}, **common))
    student = dict(arch=ARCH, data=str(data), epochs=args.distil_epochs, batch_size=16,
                   model_args={"width": 8}, **common)
    scratch = train(TrainConfig(**student, name=f"student_scratch_s{seed}"))
    distilled = train(TrainConfig(**student, name=f"student_distilled_s{seed}", teacher=str(teacher),
                                  temperature=args.temperature, alpha=args.alpha))
    # the same number of steps over 300 labelled + N unlabeled images
    per_epoch = -(-(300 + args.unlabeled) // 16)
    epochs = max(1, round(steps(scratch) / per_epoch))
    with_unl = train(TrainConfig(**{**student, "epochs": epochs}, name=f"student_distilled_unlabeled_s{seed}",
                                 teacher=str(teacher), temperature=args.temperature, alpha=args.alpha,
                                 unlabeled=f"shapes:{args.unlabeled}"))
    return {"seed": seed, "teacher": accuracy(teacher), "scratch": accuracy(scratch),
            "distilled": accuracy(distilled), "distilled_unlabeled": accuracy(with_unl),
            "params": {k: runs.load_config(r)["params"] for k, r in
                       (("teacher", teacher), ("student", scratch))},
            "steps": {k: steps(r) for k, r in (("teacher", teacher), ("student", scratch),
                                                 ("unlabeled", with_unl))}}


def _mean(values) -> str:
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def ablation_table(rows: list) -> list:
    lines = ["| round-1 student | pseudo-labels (distinct) | their accuracy | val accuracy |",
             "|---|---:|---:|---:|"]
    for label, row in rows:
        kept = row["pseudo_labels_kept"]
        lines.append(f"| {label} | {kept} ({row.get('distinct_images', kept)}) "
                     f"| {row['pseudo_label_accuracy']:.3f} | {row['val_accuracy']:.3f} |")
    return lines


def report(st: list, kd: list, args, load: tuple, ab: list | None = None) -> str:
    lines = [f"### Data-efficient learning (`benchmarks/data_efficient.py`, {time.strftime('%Y-%m-%d')})", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
             f"{platform.python_version()}, Keras {keras.__version__}. Load average {load[0]:.1f} before, "
             f"{load[1]:.1f} after (shared with other TensorFlow jobs: times are noisy, accuracies are not "
             "affected). Model: the script's `bench_cnn` (VGG-style, 3 stages, GAP, dropout 0.2) at "
             f"{args.img_size} px; every figure is validation accuracy on the same 600 shapes images; "
             f"seeds {args.seeds}.", ""]
    if st:
        lines += ["#### Self-training with 10 labels per class", "",
                  f"30 labelled images + {args.unlabeled} unlabeled (`--unlabeled shapes:{args.unlabeled}`). "
                  "From scratch, 30 images leave this CNN at chance (measured for seed 0: val 0.37 after "
                  "100 epochs, 0.38 with rotation augmentation), so every run here starts from the same "
                  "pretrained backbone "
                  "(`--pretrained`, `--backbone-lr-mult 0.1`, as one would start from ImageNet weights): "
                  f"the CNN trained on {args.pretrain_images} labelled images of five *other* shapes drawn "
                  "the same way (cross, ellipse, pentagon, rectangle, star; val accuracy "
                  f"{_mean(r['source_accuracy'] for r in st)}). "
                  f"`kcv self-train --rounds {args.rounds} --threshold {args.threshold}`: hard, class-balanced "
                  f"pseudo-labels, students with `{NOISE}` and dropout 0.2; width 16; {args.teacher_epochs} "
                  f"teacher epochs of 3 steps, {args.student_epochs} student epochs.", "",
                  "| training | val accuracy |", "|---|---:|",
                  f"| labels only (round 0, 30 images, {args.teacher_epochs * 3} steps) | "
                  f"{_mean(r['labels_only'] for r in st)} |",
                  f"| labels only, as many steps as a student ({st[0]['long_steps']}) with its noise | "
                  f"{_mean(r['labels_only_long'] for r in st)} |",
                  f"| **kcv self-train**, final student (round {args.rounds}) | "
                  f"**{_mean(r['self_train'] for r in st)}** |", ""]
        for r in st:
            lines += [f"Rounds, seed {r['seed']} ({r['minutes']:.1f} min):", "", summary_table(r["rows"]), ""]
        if ab:
            lines += [f"One option at a time (`--ablation`; seed {st[0]['seed']}, one student round from the "
                      "same round-0 teacher):", "", *ablation_table(ab), ""]
    if kd:
        p = kd[0]["params"]
        lines += ["#### Knowledge distillation", "",
                  f"Teacher: width 32 ({p['teacher']:,} params) on all 3000 labelled images "
                  f"({kd[0]['steps']['teacher']} steps): {_mean(r['teacher'] for r in kd)}. "
                  f"Student: width 8 ({p['student']:,} params), from scratch, on 300 labelled images "
                  f"(100 a class), {args.distil_epochs} epochs of batch 16 ({kd[0]['steps']['student']} "
                  f"steps), the same schedule and seed with and without the teacher; T = {args.temperature}, "
                  f"alpha = {args.alpha}.", "",
                  "| student | val accuracy |", "|---|---:|",
                  f"| from scratch (labels only) | {_mean(r['scratch'] for r in kd)} |",
                  f"| **distilled** (`--teacher`) | **{_mean(r['distilled'] for r in kd)}** |",
                  f"| distilled + {args.unlabeled} unlabeled images, KL term only (`--unlabeled`; "
                  f"{kd[0]['steps']['unlabeled']} steps) | {_mean(r['distilled_unlabeled'] for r in kd)} |", ""]
    return "\n".join(lines)


def write_results(text: str, begin: str = BEGIN, end: str = END,
                  heading: str = "Data-efficient learning (issue 6)") -> None:
    """Replace RESULTS.md's section between the ``begin``/``end`` markers (or append it)."""
    block = f"{begin}\n\n{text}\n{end}"
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    RESULTS.write_text(new)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("selftrain", "distill"), default=None)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--unlabeled", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--pretrain-images", type=int, default=3000)
    ap.add_argument("--pretrain-epochs", type=int, default=12)
    ap.add_argument("--teacher-epochs", type=int, default=60)
    ap.add_argument("--student-epochs", type=int, default=6)
    ap.add_argument("--big-teacher-epochs", type=int, default=12)
    ap.add_argument("--distil-epochs", type=int, default=60)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--work", default=None, help="folder for data and runs [default: a temp folder]")
    ap.add_argument("--ablation", action="store_true",
                    help="also run one-round self-training variants (threshold, soft, noise) for the first seed")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--verbose", type=int, default=0)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="kcv-data-efficient-"))
    register_bench_cnn()
    load0 = os.getloadavg()[0]
    st = [self_training(work, s, args) for s in seeds] if args.only in (None, "selftrain") else []
    ab = ablation(work, seeds[0], args, st[0]) if args.ablation and st else None
    for r in st:
        print(f"self-training seed {r['seed']}: labels only {r['labels_only']:.3f}, long {r['labels_only_long']:.3f}, "
              f"self-train {r['self_train']:.3f}", flush=True)
    kd = [distillation(work, s, args) for s in seeds] if args.only in (None, "distill") else []
    for r in kd:
        print(f"distillation seed {r['seed']}: teacher {r['teacher']:.3f}, scratch {r['scratch']:.3f}, "
              f"distilled {r['distilled']:.3f}, +unlabeled {r['distilled_unlabeled']:.3f}", flush=True)
    text = report(st, kd, args, (load0, os.getloadavg()[0]), ab)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
