"""``kcv predict``: run a ``.keras``, ``.tflite`` or ``.onnx`` model (or a run) on images.

A run directory brings its class names and input size (``config.json``); on a run the
runtime defaults to the fastest *verified* one in ``exports/report.json`` (by the
benchmark's p50 latency when ``kcv benchmark`` has run, else fp32 TFLite, then ONNX, then
Keras). A bare model file takes its metadata from the run it sits in (``RUN/model.keras``
or ``RUN/exports/*``), else from its input shape, with generic class names (the ImageNet
class names for a 1000-way classifier, e.g. ``kcv.create_model(..., weights="imagenet")``
saved by hand).

Segmentation probabilities pass through an optional post-processing hook before the
argmax — ``postprocess(image uint8 [H, W, 3], probs [H, W, C]) -> probs`` at the model's
resolution — which is where a dense CRF plugs in: ``kcv.postprocess.crf.dense_crf`` has
exactly that signature (``kcv predict --crf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from kcv import runs
from kcv.errors import KcvError
from kcv.contracts import EXPORTS_DIR, MODEL_FILE
from kcv.export import report as export_report
from kcv.runtime import runners

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
RUNTIMES = ("keras", "tflite", "onnx")
PostProcess = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Predictor:
    """A loaded model plus what is needed to read its output."""

    runner: Callable
    task: str
    class_names: list
    img_size: tuple  # (H, W)
    model_path: Path
    runtime: str


def is_model_arg(arg, root=runs.DEFAULT_ROOT) -> bool:
    """Whether a positional argument names a model (run dir or model file), not images."""
    path = Path(arg)
    if path.suffix.lower() in runners.SUFFIXES:
        return True
    return runs.is_run_dir(path) or (not path.exists() and runs.is_run_dir(Path(root) / str(arg)))


def list_images(inputs: Iterable) -> list[Path]:
    """Image files named in ``inputs``: files as given, folders searched recursively."""
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise KcvError(f"{path}: no such image or folder")
    if not found:
        raise KcvError(f"no images in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return found


def load_image(path, size) -> tuple[np.ndarray, np.ndarray]:
    """``(model input float32 [H, W, 3], original uint8 [h, w, 3])`` of an image file.

    Resized exactly as the training pipeline does (bilinear with antialiasing, rounded to
    uint8; :mod:`kcv.runtime.image` does it bit for bit without TensorFlow), so a
    prediction sees what validation saw. Grayscale/RGBA become RGB.
    """
    from kcv.runtime.image import resize_to_uint8

    from kcv.data.images import open_oriented

    h, w = (size, size) if isinstance(size, int) else size
    try:
        original = open_oriented(path)  # EXIF orientation applied, as in training
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise KcvError(f"{path}: cannot read image ({type(e).__name__})") from None
    return resize_to_uint8(original, (h, w)).astype(np.float32), original


def open_predictor(model=None, runtime: str | None = None, img_size: int | None = None,
                   num_threads: int = 2, root=runs.DEFAULT_ROOT) -> Predictor:
    """Load ``model`` (run dir, model file, or ``None`` = newest run) for prediction."""
    if runtime is not None and runtime not in RUNTIMES:
        raise KcvError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    path = Path(model) if model is not None else None
    if path is None or path.suffix.lower() not in runners.SUFFIXES:
        run = runs.open_run(model, root)
        file, kind = choose_runtime(run, runtime)
    else:
        if runtime is not None:
            raise KcvError(f"--runtime applies to a run directory; {path} is already a {path.suffix} file")
        file, kind, run = path, runners.SUFFIXES[path.suffix.lower()], _run_of(path)
    runner = runners.open_runner(file, threads=num_threads)
    return _describe(runner, file, kind, run, img_size)


def _run_of(path: Path) -> runs.Run | None:
    """The run a model file belongs to (``RUN/model.keras``, ``RUN/exports/x``), if any."""
    for run_dir in (path.parent, path.parent.parent):
        if runs.is_run_dir(run_dir):
            return runs.Run(run_dir)
    return None


def _describe(runner, file: Path, kind: str, run: runs.Run | None, img_size) -> Predictor:
    if run is not None:
        if img_size is not None and int(img_size) != run.img_size:
            raise KcvError(f"--img-size {img_size}: {file} was trained at {run.img_size} px (its run's "
                           "config.json); leave --img-size out")
        return Predictor(runner, run.task, run.class_names, (run.img_size, run.img_size), file, kind)
    h, w = runner.input_shape[:2]
    if h is None or w is None:
        if img_size is None:
            raise KcvError(f"{file}: the model accepts any input size and has no run config; pass --img-size")
        _check_img_size(int(img_size))
        h = w = int(img_size)
    elif img_size is not None and (int(img_size), int(img_size)) != (h, w):
        raise KcvError(f"--img-size {img_size}: {file} takes fixed {h}x{w} inputs; leave --img-size out")
    probe = runner(np.zeros((1, h, w, 3), np.float32))
    task = "classification" if probe.ndim == 2 else "segmentation"
    names = _metadata_labels(file) if kind == "tflite" else []
    if len(names) != probe.shape[-1]:
        names = [f"class_{i}" for i in range(probe.shape[-1])]
        from kcv.data.imagenet_labels import IMAGENET_CLASSES, class_names

        if task == "classification" and probe.shape[-1] == IMAGENET_CLASSES:
            # no run config, no labels in the file: a 1000-way classifier is taken for an
            # ImageNet one (kcv.create_model(..., 1000, weights="imagenet") saved by hand)
            names = class_names()
    return Predictor(runner, task, names, (h, w), file, kind)


def _check_img_size(size: int) -> None:
    from kcv.models.feasibility import memory_limit

    if size < 1 or 2 * size * size * 3 * 4 > memory_limit():  # the input and one feature map
        raise KcvError(f"--img-size {size}: must be between 1 and what fits in memory")


def _metadata_labels(file: Path) -> list:
    """Class names from a ``.tflite`` file's TFLite Metadata (``labels.txt``), if any."""
    from kcv.export import metadata

    try:
        return list((metadata.read(file.read_bytes()) or {}).get("labels", []))
    except Exception:  # metadata written by another tool in a form we do not parse: use indices
        return []


def choose_runtime(run, runtime: str | None = None) -> tuple[Path, str]:
    """``(model file, runtime)`` for a run (a :class:`~kcv.runs.Run` or its directory):
    ``runtime`` if given, else the fastest verified."""
    run = run if isinstance(run, runs.Run) else runs.Run(run)
    report = run.report
    verified = {k: (path, e) for k, (path, e) in export_report.verified(run.path, report, ("ok",)).items()
                if e.get("runtime") in ("tflite", "onnx")}
    candidates = [("keras", run.path / MODEL_FILE, "keras")] + [
        (k, path, e["runtime"]) for k, (path, e) in verified.items()]
    if runtime is not None:
        candidates = [c for c in candidates if c[2] == runtime]
        if not candidates:
            flag = "--tflite" if runtime == "tflite" else "--onnx"
            raise KcvError(f"{run.path}: no verified {runtime} file in {EXPORTS_DIR}/; run `kcv export {flag}` first")
    latency = {row["format"]: row["p50_ms"] for row in report.get("benchmark", {}).get("rows", [])}
    preference = ["tflite", "onnx", "fp16", "dynamic", "int8", "keras"]  # docs/design.md §8 measurements

    def rank(c):
        return (latency.get(c[0], float("inf")),
                preference.index(c[0]) if c[0] in preference else len(preference))
    best = min(candidates, key=rank)
    return best[1], best[2]


@dataclass
class Prediction:
    """One image's result: ``record`` is the JSON line printed for it."""

    record: dict
    probs: np.ndarray


def predict_images(predictor: Predictor, images: list[Path], out: Path | None = None, top_k: int = 5,
                   postprocess: PostProcess | None = None) -> Iterator[Prediction]:
    """Yield a :class:`Prediction` per image (segmentation also writes PNGs under ``out``)."""
    if top_k < 1:
        raise KcvError(f"--top-k {top_k}: must be at least 1")
    if predictor.task == "segmentation":
        out = runs.ensure_dir(out or "predictions", "--out")
    stems: dict[str, int] = {}
    for path in images:
        x, original = load_image(path, predictor.img_size)
        probs = predictor.runner(x[None])[0]
        if predictor.task == "classification":
            yield Prediction(_classification_record(path, probs, predictor.class_names, top_k), probs)
            continue
        if postprocess is not None:
            probs = postprocess(x.astype(np.uint8), probs)
        stem = path.stem if path.stem not in stems else f"{path.stem}-{stems[path.stem]}"
        stems[path.stem] = stems.get(path.stem, 1) + 1
        yield Prediction(_segmentation_record(path, probs, original, predictor.class_names, out, stem), probs)


def _classification_record(path, probs, names, top_k) -> dict:
    order = np.argsort(-probs)[:top_k]
    return {"file": str(path), "top_k": [{"label": names[i], "prob": round(float(probs[i]), 4)} for i in order]}


def _segmentation_record(path, probs, original, names, out: Path, stem: str) -> dict:
    from kcv.viz.overlay import save_mask_and_overlay

    mask = probs.argmax(-1).astype(np.uint8)
    h, w = original.shape[:2]
    # Nearest neighbour: any interpolation would invent class indices between two labels.
    full = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST), np.uint8)
    mask_path, overlay_path = save_mask_and_overlay(original, full, out / f"{stem}_mask.png",
                                                    out / f"{stem}_overlay.png")
    counts = np.bincount(full.reshape(-1), minlength=len(names)) / full.size
    return {"file": str(path), "mask": str(mask_path), "overlay": str(overlay_path),
            "classes": {names[i]: round(float(c), 4) for i, c in enumerate(counts) if c > 0}}
