"""``kcv compare``: trained runs side by side — accuracy against cost, the course's summary chart.

For each run: its validation metric from ``metrics.json`` (``val_accuracy`` for classifiers,
``val_miou`` for segmentation), and the parameters and multiply–accumulates ("GFLOPs" as the
papers count them, :func:`kcv.models.analysis.count_macs`) of its deployable model
(:func:`kcv.models.inference_model`: GoogLeNet's aux heads dropped) **at the run's own input
size** — the size the metric was measured at, so both axes describe the same model. (``kcv
models`` lists every architecture at 224 px instead.)

The chart plots metric against GFLOPs with bubble *area* proportional to parameters (Canziani
et al., "An Analysis of Deep Neural Network Models for Practical Applications", 2016, drew the
ImageNet zoo this way); the same numbers go into a markdown table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from kcv import runs
from kcv.errors import KcvError
from kcv.contracts import CONFIG_FILE, METRICS_FILE

DEFAULT_OUT = "compare.png"
METRICS = {"classification": ("val_accuracy", "accuracy"), "segmentation": ("val_miou", "mIoU")}
MAX_AREA = 2400.0  # points² of the largest bubble


@dataclass
class RunSummary:
    """One row of the comparison."""

    name: str
    path: Path
    arch: str
    task: str
    img_size: int
    metric: str
    value: float
    params: int
    macs: int

    @property
    def gflops(self) -> float:
        return self.macs / 1e9


def summarize(run, root=runs.DEFAULT_ROOT) -> RunSummary:
    """Metric, parameters and MACs of one finished run (a one-line :class:`KcvError` if it is not)."""
    import keras

    from kcv.models import inference_model
    from kcv.models.analysis import count_macs

    found = runs.open_run(run, root)
    path, task = found.path, found.config.get("task")
    scores = found.metrics
    if task not in METRICS:
        raise KcvError(f"{path / CONFIG_FILE}: unknown task {task!r}")
    key = METRICS[task][0]
    value = scores.get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise KcvError(f"{path / METRICS_FILE}: no finite {key}")
    deployed = inference_model(found.model())
    row = RunSummary(path.name, path, found.arch, task, found.img_size, key,
                     float(value), int(deployed.count_params()), int(count_macs(deployed)))
    keras.backend.clear_session()
    return row


def markdown_table(rows: list[RunSummary]) -> str:
    """The comparison as a markdown table, best metric first."""
    label = METRICS[rows[0].task][0]
    lines = [f"| run | arch | img | {label} | params | GFLOPs |", "|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r.value):
        lines.append(f"| {r.name} | {r.arch} | {r.img_size} | {r.value:.4f} | {r.params:,} | {_gflops(r.gflops)} |")
    return "\n".join(lines)


def _gflops(g: float) -> str:
    return f"{g:.3g}" if g < 100 else f"{g:.0f}"


def plot_comparison(rows: list[RunSummary], path, title: str = "") -> Path:
    """Metric vs GFLOPs, bubble area ∝ parameters, one colour per run, to ``path`` (atomic)."""
    from kcv.viz import style

    biggest = max(r.params for r in rows)
    metric_name = METRICS[rows[0].task][1]
    with style.style() as plt:
        fig, ax = plt.subplots(figsize=(7.0, 4.6))
        for i, r in enumerate(rows):
            colour = style.PALETTE[i % len(style.PALETTE)]
            area = MAX_AREA * r.params / biggest
            ax.scatter(r.gflops, r.value, s=area, color=colour, alpha=0.45, edgecolors=colour, linewidths=1.5)
            ax.plot(r.gflops, r.value, "o", color=colour, ms=3)  # keeps a tiny model's bubble visible
            # labels alternate above/below so that runs at the same spot stay readable
            ax.annotate(f"{r.name}\n{_params_text(r.params)}", (r.gflops, r.value),
                        xytext=(8, 6 if i % 2 == 0 else -26), textcoords="offset points", fontsize=8)
        gfl = [r.gflops for r in rows]
        if min(gfl) > 0 and max(gfl) / min(gfl) > 20:
            ax.set_xscale("log")
        _pad_limits(ax, gfl, [r.value for r in rows])
        ax.set_xlabel("GFLOPs per image (multiply–accumulates, at each run's input size)")
        ax.set_ylabel(f"validation {metric_name}")
        ax.set_title(title or f"validation {metric_name} vs cost — bubble area ∝ parameters")
        fig.tight_layout()
    return style.save(fig, path)


def _params_text(n: int) -> str:
    return f"{n / 1e6:.2f} M params" if n >= 1e5 else f"{n / 1e3:.1f} k params"


def _pad_limits(ax, xs, ys) -> None:
    """Room around the bubbles and their labels."""
    lo, hi = min(ys), max(ys)
    span = max(hi - lo, 0.05)
    ax.set_ylim(max(lo - 0.3 * span, -0.02), min(hi + 0.35 * span, 1.05))  # metrics live in [0, 1]
    if ax.get_xscale() == "log":
        ax.set_xlim(min(xs) / 2.5, max(xs) * 4)
    else:
        span = max(max(xs) - min(xs), 0.05 * max(xs), 1e-6)
        ax.set_xlim(max(0.0, min(xs) - 0.3 * span), max(xs) + 0.5 * span)


def compare_runs(run_args, out=None, root=runs.DEFAULT_ROOT) -> tuple[str, Path, Path]:
    """``kcv compare``: summarise ``run_args``, write the chart and the markdown table.

    Args:
        run_args: run directories (or names under ``root``); all of one task.
        out: the chart's path (``.png``); the table goes beside it as ``.md``
            (default ``compare.png`` / ``compare.md``).

    Returns:
        ``(markdown table, chart path, table path)``.
    """
    out = Path(out or DEFAULT_OUT)
    if out.suffix.lower() != ".png":
        raise KcvError(f"--out {out}: the chart is a PNG; name a .png file (the table goes beside it as .md)")
    if not run_args:
        raise KcvError("name at least one run directory to compare")
    rows = [summarize(r, root) for r in run_args]
    tasks = sorted({r.task for r in rows})
    if len(tasks) > 1:
        mixed = ", ".join(f"{r.name} ({r.task})" for r in rows)
        raise KcvError(f"cannot put accuracy and mIoU on one axis: {mixed}; compare runs of one task")
    table = markdown_table(rows)
    chart = plot_comparison(rows, out)
    md = runs.write_text(out.with_suffix(".md"), table + "\n")
    return table, chart, md
