"""``kcv eval``: score a run's best model on its validation data (or another folder)."""

from __future__ import annotations

import click


@click.command("eval")
@click.argument("run", required=False)
@click.option("--data", default=None,
              help="Data to evaluate on: 'shapes', 'shapes:N' or a folder [default: the run's --data]; "
                   "its validation split is used.")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: the run's].")
@click.option("--root", default="saved_models", show_default=True,
              help="Folder searched for RUN, and for the newest run when RUN is omitted.")
def command(run, data, batch_size, root):
    """Evaluate RUN (default: the newest run); write RUN/eval.json and RUN/confusion.png.

    \b
    Classification: accuracy, top-5 accuracy, loss, per-class precision and recall.
    Segmentation: mean IoU, pixel accuracy, per-class IoU, loss.
    \b
    Examples:
      kcv eval
      kcv eval saved_models/lenet5 --data my_photos/
    """
    from kcv.evaluate import evaluate_run

    report, run_dir = evaluate_run(run, data=data, batch_size=batch_size, root=root)
    click.echo(format_report(report))
    click.echo(f"wrote {run_dir / 'eval.json'} and {run_dir / 'confusion.png'}")


def format_report(report: dict) -> str:
    """A short text table of an ``eval.json`` report."""
    lines = [f"{report['run']} on {report['data']} ({report['split']}, {report['num_images']} images)"]
    lines.append("  " + "  ".join(f"{k} {report[k]:.4f}" for k in
                                  ("val_accuracy", "val_top5_accuracy", "val_miou", "val_pixel_accuracy", "val_loss")
                                  if isinstance(report.get(k), float)))
    if "per_class" in report:
        lines.append(f"  {'class':<16}{'precision':>10}{'recall':>10}{'support':>9}")
        for name, s in report["per_class"].items():
            p, r = (f"{v:.3f}" if v is not None else "-" for v in (s["precision"], s["recall"]))
            lines.append(f"  {name:<16}{p:>10}{r:>10}{s['support']:>9}")
    elif "per_class_iou" in report:
        lines.append(f"  {'class':<16}{'IoU':>10}")
        for name, v in report["per_class_iou"].items():
            lines.append(f"  {name:<16}{(f'{v:.3f}' if v is not None else '-'):>10}")
    return "\n".join(lines)
