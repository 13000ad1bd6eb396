"""The export format table and the export driver (``kcv export``).

Each format is written to a temporary name in ``exports/``, loaded in its own runtime,
compared with the Keras inference model on validation images, and renamed into place only
if it passes (docs/design.md §7.5: a verified round trip in the real runtime). Results are merged into
``exports/report.json``; a failed format keeps the previous good file, if any.

Pass rules (also written into each report entry as ``rule``):

* fp32 TFLite, ONNX, SavedModel: max |Δprob| ≤ 1e-4.
* fp16, dynamic-range and full-int8 TFLite, int8 ONNX: one gate (:mod:`kcv.export.gate`) —
  top-1 agreement with Keras per image / per pixel ≥ ``--min-agreement`` (default 98 %) and
  a metric drop ≤ ``--max-drop`` points (default 1) where the model is strong enough for
  its metric to judge; ``--allow-drop`` installs a file that misses it. max |Δprob| is
  reported, not gated (the max over millions of pixels finds the class boundaries, where
  the softmax is steepest).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from kcv import capabilities, runs
from kcv.errors import KcvError
from kcv.evaluation.scores import task_metric
from kcv.export import gate, metadata, ops, quantize, tflite, tflite_model, verify
from kcv.export import onnx as onnx_export
from kcv.export import report as export_report
from kcv.runtime import runners

FP32_TOL = 1e-4


@dataclass(frozen=True)
class ExportFormat:
    """One row of the format table.

    Attributes:
        name: key in ``report.json``, ``--formats`` and ``kcv predict --runtime``.
        filename: file (or folder) written under ``exports/``.
        convert: ``convert(ctx, tmp_path) -> dict`` (extra report fields).
        max_abs_diff: fail above this max |Δprob| (``None``: reduced precision, judged by
            :func:`kcv.export.gate.judge`).
        runtime: ``tflite``, ``onnx`` or ``tf`` (SavedModel): the file is verified in it,
            opened by :func:`kcv.runtime.runners.open_runner`.
    """

    name: str
    filename: str
    convert: Callable
    max_abs_diff: float | None
    runtime: str

    @property
    def quantized(self) -> bool:
        return self.max_abs_diff is None


@dataclass
class ExportOptions:
    """Every ``kcv export`` knob; see the command's ``--help``."""

    samples: int = 200
    calib_samples: int = 200
    calib_data: str | None = None
    max_drop: float = 1.0
    min_agreement: float = gate.MIN_AGREEMENT
    allow_drop: bool = False
    allow_flex: bool = False
    keep_float: str | None = None
    opset: int | None = None
    int8_io: str = "uint8"
    checks: tuple = ()  # "mediapipe": load each .tflite in MediaPipe Tasks too


class _Rejected(Exception):
    """Raised inside the atomic write so that a file failing a check is discarded."""

    def __init__(self, entry):
        super().__init__(entry.get("reason", "verification failed"))
        self.entry = entry


@dataclass
class ExportContext:
    """What the converters share: the inference model, data and a staged SavedModel."""

    model: object
    cfg: dict
    source: object
    options: ExportOptions
    workdir: Path
    images: np.ndarray
    targets: np.ndarray
    reference: np.ndarray
    _cache: dict = field(default_factory=dict)

    def saved_model(self) -> Path:
        if "sm" not in self._cache:
            self._cache["sm"] = tflite.stage_saved_model(self.model, self.workdir / "saved_model")
        return self._cache["sm"]

    def calibration(self) -> np.ndarray:
        if "calib" not in self._cache:
            self._cache["calib"] = load_calibration(self.source, self.options, self.cfg["img_size"])
        return self._cache["calib"]

    def ties(self):
        """``(images at a tie: bool per image, the rule)``; ``(None, "")`` for a model without
        the ``ties`` capability (:mod:`kcv.capabilities`)."""
        if "ties" not in self._cache:
            layer = capabilities.tie_layer(self.model)
            self._cache["ties"] = (None, "") if layer is None else (layer.tie_mask(self.model, self.images),
                                                                    layer.tie_rule)
        return self._cache["ties"]

    def baseline(self) -> float:
        """The metric of always predicting the majority class (the floor of the gate)."""
        if "floor" not in self._cache:
            self._cache["floor"] = gate.baseline(self.targets, self.cfg["task"], self.cfg["num_classes"])
        return self._cache["floor"]

    def metric(self, probs) -> float:
        return task_metric(probs, self.targets, self.cfg["task"], self.cfg["num_classes"])[1]

    def drop_of(self, tflite_bytes: bytes) -> float:
        """Metric drop in points of a candidate ``.tflite`` on the validation images."""
        probs = runners.open_runner(tflite_bytes, "tflite")(self.images)
        return 100 * (self.metric(self.reference) - self.metric(probs))


def fixed_size(model, cfg: dict):
    """``model`` with a fixed ``img_size`` input. A ``--crop`` run's model takes any size
    (crops in training, whole photos in eval); an exported file takes one, so the same
    weights go into the architecture built at ``img_size`` (the crop size by default)."""
    if None not in tuple(model.input_shape[1:3]):
        return model
    from kcv.registry import create_model

    side = int(cfg["img_size"])
    fixed = create_model(cfg["arch"], int(cfg["num_classes"]), (side, side, 3), **cfg.get("model_args", {}))
    fixed.set_weights(model.get_weights())
    return fixed


def load_calibration(source, options: ExportOptions, img_size: int) -> np.ndarray:
    """``--calib-samples`` training images of the run, or the images under ``--calib-data``."""
    if options.calib_data is None:
        images, _ = source.arrays("train", limit=options.calib_samples)
        return images
    from kcv.runtime.predict import list_images, load_image

    paths = list_images([options.calib_data])[:options.calib_samples]
    return np.stack([load_image(p, img_size)[0] for p in paths])


# --- converters: convert(ctx, tmp_path) -> extra report fields ------------------------------

def _write_tflite(ctx: ExportContext, tmp: Path, data: bytes, variant: str) -> dict:
    checked = ops.check_ops(data)
    if checked["flex"] and not ctx.options.allow_flex:
        raise _Rejected({**checked, "status": "refused",
                         "reason": f"needs Flex (select TF) ops {', '.join(checked['flex'])}; "
                                   f"rerun with --allow-flex to bundle them"})
    # Every .tflite carries TFLite Metadata (labels, normalisation) for MediaPipe Tasks and
    # the Android Task Library; the verification below then runs the file with it.
    info = metadata.describe_run(ctx.cfg, variant)
    data = metadata.attach(data, info)
    problems = metadata.check(data, info)
    if problems:
        raise _Rejected({**checked, "status": "failed",
                         "reason": f"metadata does not read back: {'; '.join(problems)}"})
    tmp.write_bytes(data)
    inp, out = tflite_model.io_types(data)
    return {**checked, "metadata": {"labels": len(info.labels), "mean": list(info.mean), "std": list(info.std)},
            "input_type": inp, "output_type": out}


def _tflite_variant(variant: str):
    def convert(ctx: ExportContext, tmp: Path) -> dict:
        return _write_tflite(ctx, tmp, tflite.convert(ctx.saved_model(), variant), variant)
    convert.__name__ = f"convert_{variant}"
    return convert


def _convert_int8(ctx: ExportContext, tmp: Path) -> dict:
    keep, io = ctx.options.keep_float, ctx.options.int8_io
    calib = ctx.calibration()
    if not keep:
        info = _write_tflite(ctx, tmp, tflite.convert(ctx.saved_model(), "int8", calib, io), "int8")
        info["calib_samples"] = int(len(calib))
        return info
    triage = quantize.Triage(ctx.saved_model(), calib, ctx.images, io)
    steps = None
    if keep == "auto":
        data, kept, steps = triage.keep_float_auto(ctx.drop_of, ctx.options.max_drop)
    else:
        wanted = {name.strip() for name in keep.split(",") if name.strip()}
        kept = [e for e in triage.errors if wanted & set(e.layer.split("+"))]
        known = {n for e in triage.errors for n in e.layer.split("+")}
        if wanted - known:
            raise KcvError(f"--int8-keep-float: no quantized layer named {', '.join(sorted(wanted - known))}; "
                           f"layers: {', '.join(sorted(known))}")
        data = triage.quantize([e.tensor for e in kept])
    info = _write_tflite(ctx, tmp, data, "int8")
    info.update(calib_samples=int(len(calib)), kept_float=[e.as_dict() for e in kept])
    if steps is not None:
        info["keep_float_steps"] = steps
    return info


def _convert_onnx(ctx: ExportContext, tmp: Path) -> dict:
    onnx_export.convert(ctx.model, tmp, ctx.options.opset)
    return onnx_export.graph_summary(tmp)


def _convert_onnx_int8(ctx: ExportContext, tmp: Path) -> dict:
    from kcv.export import onnx_quant

    fp32 = ctx.workdir / "fp32.onnx"
    if not fp32.exists():
        onnx_export.convert(ctx.model, fp32, ctx.options.opset)
    calib = ctx.calibration()
    onnx_quant.quantize(fp32, tmp, calib)
    return {**onnx_export.graph_summary(tmp), "calib_samples": int(len(calib)),
            "size_vs_fp32": round(_size(tmp) / _size(fp32), 3)}  # vs the fp32 ONNX file


def _convert_saved_model(ctx: ExportContext, tmp: Path) -> dict:
    tflite.stage_saved_model(ctx.model, tmp, batch=None)  # any batch size, unlike the TFLite staging
    return {}


FORMATS = {f.name: f for f in (
    ExportFormat("tflite", "model_fp32.tflite", _tflite_variant("fp32"), FP32_TOL, "tflite"),
    ExportFormat("fp16", "model_fp16.tflite", _tflite_variant("fp16"), None, "tflite"),
    ExportFormat("dynamic", "model_dynamic.tflite", _tflite_variant("dynamic"), None, "tflite"),
    ExportFormat("int8", "model_int8.tflite", _convert_int8, None, "tflite"),
    ExportFormat("onnx", "model.onnx", _convert_onnx, FP32_TOL, "onnx"),
    ExportFormat("onnx_int8", "model_int8.onnx", _convert_onnx_int8, None, "onnx"),
    ExportFormat("saved_model", "saved_model", _convert_saved_model, FP32_TOL, "tf"),
)}


# --- the driver ---------------------------------------------------------------------------------

@dataclass
class ExportResult:
    report: dict
    ok: bool
    failed: list


REDUCED = ("fp16", "dynamic", "int8", "onnx_int8")  # formats judged by kcv.export.gate


def check_options(formats, options: ExportOptions, given: set) -> None:
    """Refuse flags that do not apply to the requested formats (before anything is loaded)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise KcvError(f"unknown export format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    needs = {"opset": ("onnx", "onnx_int8"), "calib_samples": ("int8", "onnx_int8"),
             "calib_data": ("int8", "onnx_int8"),
             "keep_float": ("int8",), "int8_io": ("int8",), "max_drop": REDUCED,
             "allow_drop": REDUCED, "min_agreement": REDUCED}
    for key, fmts in needs.items():
        if key in given and not set(fmts) & set(formats):
            flag = {"keep_float": "--int8-keep-float", "int8_io": "--int8-io"}.get(key, "--" + key.replace("_", "-"))
            raise KcvError(f"{flag} applies only to {' or '.join('--' + f.replace('_', '-') for f in fmts)}")
    if set(options.checks) - {"mediapipe"}:
        raise KcvError(f"--check {', '.join(sorted(set(options.checks) - {'mediapipe'}))}: known checks: mediapipe")
    if "mediapipe" in options.checks and not {"tflite", "fp16", "dynamic", "int8"} & set(formats):
        raise KcvError("--check mediapipe applies only to .tflite formats (--tflite, --fp16, --dynamic, --int8)")
    if options.int8_io not in tflite.INT8_IO:
        raise KcvError(f"--int8-io {options.int8_io}: choose one of {', '.join(tflite.INT8_IO)}")
    if not 0 <= options.min_agreement <= 1:
        raise KcvError(f"--min-agreement {options.min_agreement}: a fraction between 0 and 1, e.g. 0.98")
    if options.samples < 1:
        raise KcvError(f"--samples {options.samples}: must be at least 1")
    if options.calib_samples < 1:
        raise KcvError(f"--calib-samples {options.calib_samples}: --int8 needs at least 1 calibration image")
    if options.max_drop < 0:
        raise KcvError(f"--max-drop {options.max_drop}: must be >= 0 (points of accuracy / mIoU)")
    if options.calib_data is not None:
        from kcv.runtime.predict import list_images

        if not Path(options.calib_data).exists():
            raise KcvError(f"--calib-data {options.calib_data}: no such file or folder")
        from kcv.runtime.predict import load_image

        for path in list_images([options.calib_data])[:options.calib_samples]:
            load_image(path, 1)  # a damaged file is named now, not after the model is staged
    if options.opset is not None and options.opset not in onnx_export.OPSETS:
        r = onnx_export.OPSETS
        raise KcvError(f"--opset {options.opset}: tf2onnx writes opsets {r.start}-{r.stop - 1}")


def export_run(run=None, formats=("tflite",), options: ExportOptions | None = None, given=(),
               root=runs.DEFAULT_ROOT, log=print, samples: int | None = None) -> ExportResult:
    """Export a run to each of ``formats``, verify each file, merge ``exports/report.json``.

    Args:
        run: run directory (``None``: the newest under ``root``).
        formats: keys of :data:`FORMATS`.
        options: conversion and verification options.
        given: names of the options the user set explicitly (checked for applicability).
        log: where progress lines go.
        samples: shorthand for ``options.samples`` (the skeleton's signature).

    Returns:
        The merged report, whether every requested format passed, and the failures.
    """
    from kcv.models import inference_model

    options = options or ExportOptions()
    if samples is not None:
        options = dataclasses.replace(options, samples=samples)
    check_options(formats, options, set(given))
    run = runs.open_run(run, root)
    cfg = run.config
    infer = inference_model(fixed_size(run.model(), cfg))
    source = run.data_source()
    images, targets = source.arrays("val", limit=options.samples)
    reference = runners.open_runner(infer)(images)

    out_dir = run.exports
    runs.remove_stale_temps(out_dir)  # what an export killed mid-write left behind
    report = run.report
    report.update({"run": str(run.path), "arch": cfg["arch"], "task": cfg["task"],
                   "img_size": cfg["img_size"], "samples": int(len(images))})
    report.setdefault("formats", {})
    failed = []
    with tempfile.TemporaryDirectory(prefix="kcv-export-") as work:
        ctx = ExportContext(infer, cfg, source, options, Path(work), images, targets, reference)
        for key in formats:
            fmt = FORMATS[key]
            log(f"exporting {fmt.filename} ...")
            try:
                entry = _export_one(fmt, ctx, out_dir)
            except _Rejected as rejected:
                entry = rejected.entry
                failed.append((key, entry.get("reason", "failed")))
            report["formats"][key] = entry
    _add_size_ratios(report)
    export_report.write(run.path, report)
    return ExportResult(report, not failed, failed)


def _export_one(fmt: ExportFormat, ctx: ExportContext, out_dir: Path) -> dict:
    target = out_dir / fmt.filename
    with _atomic_target(target) as tmp:
        try:
            info = fmt.convert(ctx, tmp)
        except (_Rejected, KcvError):
            raise
        except Exception as e:  # the converters raise ConverterError, ValueError, ... on bad graphs
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise _Rejected({"status": "failed", "reason": f"conversion failed ({type(e).__name__}: {first})"}) from e
        if info.get("flex"):
            # Neither ai-edge-litert nor TensorFlow's pip wheel ships the Flex delegate, so a
            # Flex file cannot be run here: it is installed (the user passed --allow-flex)
            # but marked unverified, and `kcv predict`/`kcv benchmark` skip it.
            return {**info, "file": fmt.filename, "runtime": fmt.runtime, "size_mb": round(_size(tmp) / 2**20, 4),
                    "status": "unverified", "reason": "needs the Flex delegate, which this Python runtime lacks"}
        candidate = runners.open_runner(tmp, fmt.runtime)(ctx.images)
        ties, rule = ctx.ties()
        entry = verify.compare(ctx.reference, candidate, ctx.targets, ctx.cfg["task"], ctx.cfg["num_classes"],
                               ties=ties, tie_rule=rule)
        entry.update({"file": fmt.filename, "runtime": fmt.runtime, "size_mb": round(_size(tmp) / 2**20, 4)})
        entry.update(_judge(fmt, entry, ctx))
        entry.update(info)
        if "mediapipe" in ctx.options.checks and fmt.runtime == "tflite":
            _check_mediapipe(entry, tmp, ctx, candidate)
        if entry["status"] == "failed":
            if fmt.name == "int8":
                triage = quantize.Triage(ctx.saved_model(), ctx.calibration(), ctx.images, ctx.options.int8_io)
                entry["worst_layers"] = [e.as_dict() for e in triage.worst(5)]
            # Never install a file that failed verification: the previous good one stays.
            raise _Rejected(entry)
    return entry


def _check_mediapipe(entry: dict, path: Path, ctx: ExportContext, litert_probs) -> None:
    """``--check mediapipe``: the file must load in MediaPipe Tasks and agree with LiteRT."""
    from kcv.export import mediapipe_check

    result = mediapipe_check.check(path, ctx.cfg["task"], ctx.images, ctx.cfg["class_names"], litert_probs)
    entry["mediapipe"] = result
    if not result["ok"] and entry["status"] != "failed":
        entry["status"] = "failed"
        entry["reason"] = ("MediaPipe Tasks refused the file: " + result["error"] if "error" in result else
                           f"MediaPipe agrees with LiteRT on {result['agreement']:.2%} "
                           f"< {mediapipe_check.MIN_AGREEMENT:.0%}" + ("" if result.get("labels_ok", True)
                                                                       else "; labels differ"))


def _judge(fmt: ExportFormat, entry: dict, ctx: ExportContext) -> dict:
    """``status`` (ok / accepted / failed), the ``rule`` applied and, on failure, ``reason``."""
    options = ctx.options
    if not fmt.quantized:
        rule = f"max|Δprob| <= {fmt.max_abs_diff:g}"
        if entry["max_abs_diff"] <= fmt.max_abs_diff:
            return {"status": "ok", "rule": rule}
        return {"status": "failed", "rule": rule,
                "reason": f"max|Δprob| {entry['max_abs_diff']:.2e} > {fmt.max_abs_diff:g}"}
    if fmt.name != "int8":
        hint = "; use --allow-drop to keep it"
    elif options.keep_float:
        hint = ("; keeping layers in float did not recover it: check that the calibration images look like "
                "the deployment images, or use --allow-drop")
    else:
        hint = "; try --int8-keep-float auto or --allow-drop"
    return gate.judge(entry, ctx.baseline(), options.max_drop, options.min_agreement, options.allow_drop, hint)


def _add_size_ratios(report: dict) -> None:
    fp32 = report["formats"].get("tflite", {})
    for entry in report["formats"].values():
        if fp32.get("size_mb") and entry.get("size_mb") and entry.get("runtime") == "tflite":
            entry["size_vs_fp32"] = round(entry["size_mb"] / fp32["size_mb"], 3)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


class _atomic_target:
    """``runs.atomic_path`` for files, plus folder targets (``saved_model/``).

    ``os.replace`` cannot replace a non-empty folder, so an existing one is first renamed
    to a temporary name and deleted after the new one is in place; a crash between the two
    renames leaves the old folder under its temporary name, never a half-written one.
    """

    def __init__(self, target: Path):
        self.target = target
        self._file_ctx = None if target.suffix == "" else runs.atomic_path(target)

    def __enter__(self) -> Path:
        if self._file_ctx is not None:
            return self._file_ctx.__enter__()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=runs.temp_prefix(self.target.name), suffix=".tmp",
                                         dir=self.target.parent))
        self.tmp.rmdir()  # converters create the folder themselves
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if self._file_ctx is not None:
            return self._file_ctx.__exit__(exc_type, exc, tb)
        try:
            if exc_type is None:
                old = None
                if self.target.exists():
                    old = self.target.with_name(f"{runs.temp_prefix(self.target.name)}old")
                    os.replace(self.target, old)
                os.replace(self.tmp, self.target)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            if self.tmp.exists():
                shutil.rmtree(self.tmp, ignore_errors=True)
        return False
