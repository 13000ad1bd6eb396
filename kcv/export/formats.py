"""The export format table and the export driver (``kcv export``).

Each format is written to a temporary file in ``exports/``, loaded in its own runtime,
compared with the Keras inference model on validation images, and renamed into place only
if it passes. The results go to ``exports/report.json`` (merged with earlier exports).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kcv import runs
from kcv.errors import KcvError
from kcv.export import tflite, verify


@dataclass(frozen=True)
class ExportFormat:
    """One row of the format table.

    Attributes:
        name: key in ``report.json`` and ``--formats``.
        filename: file written under ``exports/``.
        convert: ``convert(inference_model, tmp_path, **options)``.
        runner: ``runner(path)`` → callable mapping float images to probabilities.
        max_abs_diff: fail the export above this max |Δprob| (``None``: judged by metric).
    """

    name: str
    filename: str
    convert: Callable
    runner: Callable
    max_abs_diff: float | None = 1e-4


FORMATS = {
    "tflite": ExportFormat("tflite", "model_fp32.tflite", tflite.convert_fp32, tflite.LiteRTRunner),
}


@dataclass
class ExportResult:
    report: dict
    ok: bool


def export_run(run=None, formats=("tflite",), samples: int = 32, root=runs.DEFAULT_ROOT,
               log=print) -> ExportResult:
    """Export a run to each of ``formats`` and verify each file.

    Args:
        run: run directory (``None``: the newest under ``root``).
        formats: keys of :data:`FORMATS`.
        samples: validation images used for the comparison.
        log: where progress lines go.

    Returns:
        The merged report and whether every requested format passed.
    """
    from kcv.data.pipeline import load_data
    from kcv.models import inference_model

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise KcvError(f"unknown export format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    if samples < 1:
        raise KcvError(f"--samples {samples}: must be at least 1")
    run_dir = runs.resolve_run(run, root)
    model, cfg = runs.load_run(run_dir)
    infer = inference_model(model)
    source = load_data(cfg["data"], cfg["task"], cfg["img_size"], seed=cfg.get("seed", 0),
                       val_split=cfg.get("val_split", 0.2))
    images, targets = source.arrays("val", limit=samples)
    reference = np.concatenate([np.asarray(infer(images[i:i + 16], training=False))
                                for i in range(0, len(images), 16)])

    out_dir = run_dir / "exports"
    report_path = out_dir / "report.json"
    report = runs.read_json(report_path) if report_path.is_file() else {}
    report.update({"run": str(run_dir), "arch": cfg["arch"], "task": cfg["task"],
                   "samples": int(len(images))})
    report.setdefault("formats", {})
    ok = True
    for key in formats:
        fmt = FORMATS[key]
        log(f"exporting {fmt.filename} ...")
        try:
            entry = _export_one(fmt, infer, out_dir, images, targets, reference, cfg)
        except _Rejected as rejected:
            entry = rejected.entry
        report["formats"][key] = entry
        ok &= entry["status"] == "ok"
    runs.write_json(report_path, report)
    return ExportResult(report, ok)


class _Rejected(Exception):
    """Raised inside the atomic write so that a file failing verification is discarded."""

    def __init__(self, entry):
        super().__init__("verification failed")
        self.entry = entry


def _export_one(fmt: ExportFormat, infer, out_dir: Path, images, targets, reference, cfg) -> dict:
    target = out_dir / fmt.filename
    with runs.atomic_path(target) as tmp:
        fmt.convert(infer, tmp)
        candidate = fmt.runner(tmp)(images)
        entry = verify.compare(reference, candidate, targets, cfg["task"], cfg["num_classes"])
        entry.update({"file": fmt.filename, "size_mb": round(os.path.getsize(tmp) / 2**20, 3)})
        passed = fmt.max_abs_diff is None or entry["max_abs_diff"] <= fmt.max_abs_diff
        entry["threshold"] = fmt.max_abs_diff
        entry["status"] = "ok" if passed else "failed"
        if not passed:
            # Never install a file that failed verification: the previous good one stays.
            raise _Rejected(entry)
    return entry
