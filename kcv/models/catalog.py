"""``kcv models``: every registered architecture with its size and cost at 224×224, cached.

Building the whole zoo at 224 px takes minutes, so each row (parameters, trainable
parameters, MACs) is cached as one JSON file per model under
``$KCV_CACHE_DIR/models/<kcv version>-<fingerprint>/`` (default ``~/.cache/kcv``). The
fingerprint hashes the Keras version and the source of ``kcv/models`` and ``kcv/layers``, so an
edited architecture is never served from a stale row. Files are written atomically; an
unwritable cache only costs speed.

Classification models are counted with 1000 classes, segmentation models with 21 (PASCAL VOC).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import keras

from kcv import __version__, runs
from kcv.models.analysis import count_macs, trainable_params
from kcv.registry import create_model, get_spec, list_models

_FINGERPRINT: str | None = None


def cache_dir() -> Path:
    """``$KCV_CACHE_DIR``, or ``~/.cache/kcv``."""
    return Path(os.environ.get("KCV_CACHE_DIR") or Path.home() / ".cache" / "kcv")


def fingerprint() -> str:
    """Hash of the Keras version and every model/layer source file (computed once)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256(keras.__version__.encode())
        for sub in ("models", "layers"):
            for path in sorted((root / sub).rglob("*.py")):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
        _FINGERPRINT = h.hexdigest()[:16]
    return _FINGERPRINT


def _cache_file(name: str) -> Path:
    return cache_dir() / "models" / f"{__version__}-{fingerprint()}" / f"{name}.json"


def measure(name: str) -> dict:
    """Build ``name`` at 224×224×3 and measure it (no cache)."""
    spec = get_spec(name)
    n_cls = 1000 if spec.task == "classification" else 21
    model = create_model(name, n_cls, (224, 224, 3))
    row = {"name": name, "params": int(model.count_params()), "trainable": int(trainable_params(model)),
           "macs": int(count_macs(model))}
    keras.backend.clear_session()
    return row


def model_row(name: str, use_cache: bool = True) -> dict:
    """The measured row of ``name``, from the cache when it has it."""
    path = _cache_file(name)
    if use_cache and path.is_file():
        try:
            row = json.loads(path.read_text())
            if row.get("name") == name:
                return row
        except (OSError, ValueError):
            pass  # unreadable or corrupt: measure again and overwrite it
    row = measure(name)
    if use_cache:
        try:
            runs.write_json(path, row)
        except OSError:
            pass
    return row


def natural_key(name: str):
    """``resnet18`` before ``resnet101``: digit runs compare as numbers."""
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def rows(task: str | None = None, use_cache: bool = True, progress=None, names=None) -> list[dict]:
    """Rows of every model of ``task`` (or of ``names``), with ``task``, ``family`` and
    ``reference`` added, in natural name order.

    ``progress(name, i, n)`` is called before each model that has to be built.
    """
    if names:
        for name in names:
            get_spec(name)  # unknown names raise KcvError with close matches
    names = sorted((n for n in list_models(task) if not names or n in names), key=natural_key)
    out = []
    for i, name in enumerate(names, 1):
        if progress and not (use_cache and _cache_file(name).is_file()):
            progress(name, i, len(names))
        spec = get_spec(name)
        out.append({**model_row(name, use_cache), "task": spec.task, "family": spec.family,
                    "reference": dict(spec.reference), "imagenet": imagenet_mark(spec)})
    return out


def imagenet_mark(spec) -> str:
    """``yes``: keras.applications publishes ImageNet weights for it (``--pretrained
    imagenet``); ``backbone``: a segmentation model whose ``backbone=`` may be such a model."""
    from kcv.models.imagenet import has_weights

    if spec.task == "classification":
        return "yes" if has_weights(spec.name) else ""
    return "backbone" if "backbone" in spec.hyperparameters else ""


def registry_table(task: str | None = None, use_cache: bool = True, progress=None, names=None) -> str:
    """Plain table: name, task, family, params (Keras total), trainable params, GFLOPs@224,
    and whether ImageNet weights exist (:func:`imagenet_mark`)."""
    head = (f"{'name':<18} {'task':<15} {'family':<13} {'params':>13} {'trainable':>13} "
            f"{'GFLOPs@224':>11}  {'imagenet':<8}")
    lines = [head, "-" * len(head)]
    for r in rows(task, use_cache, progress, names):
        lines.append(f"{r['name']:<18} {r['task']:<15} {r['family']:<13} {r['params']:>13,} "
                     f"{r['trainable']:>13,} {r['macs'] / 1e9:>11.2f}  {r['imagenet']:<8}".rstrip())
    return "\n".join(lines)


def reference_count(ref: dict) -> str:
    """Which of our counts a reference compares with: ``trainable`` (torchvision, timm, papers:
    BN statistics are buffers, not parameters) or ``total`` (keras.applications)."""
    return ref.get("count") or ("total" if "keras" in str(ref.get("source", "")).lower() else "trainable")


def _pct(ours, ref) -> str:
    return f"{100.0 * (ours - ref) / ref:+.2f} %" if ref else "—"


def markdown_table(task: str | None = None, use_cache: bool = True, progress=None, names=None) -> str:
    """The docs/models.md model table: our params/GFLOPs beside the reference figures and the % difference."""
    lines = ["| model | task | params | GFLOPs@224 | reference params | reference GFLOPs "
             "| Δ params | Δ GFLOPs | reference |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows(task, use_cache, progress, names):
        ref = r["reference"]
        kind = reference_count(ref)
        ours = r["params"] if kind == "total" else r["trainable"]
        gflops = r["macs"] / 1e9
        mark = "*" if kind == "total" else ""
        rp, rg = ref.get("params"), ref.get("gflops")
        lines.append(
            f"| `{r['name']}` | {r['task']} | {ours:,}{mark} | {gflops:.2f} | "
            f"{f'{rp:,}' if rp else '—'} | {f'{rg:.2f}' if rg else '—'} | "
            f"{_pct(ours, rp) if rp else '—'} | {_pct(gflops, rg) if rg else '—'} | {ref.get('source', '—')} |")
    lines += ["", "params: trainable parameters, as torchvision, timm and the papers count them "
                  "(Keras also counts BatchNorm moving statistics, as non-trainable weights); "
                  "`*`: total Keras parameters, as keras.applications counts them. GFLOPs: "
                  "multiply–accumulates at 224×224, 1000 classes (segmentation: 21)."]
    return "\n".join(lines)
