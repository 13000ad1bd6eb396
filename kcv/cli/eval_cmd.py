"""``kcv eval``: score a run's best model on its validation data (or another folder)."""

from __future__ import annotations

import click


@click.command("eval")
@click.argument("run", required=False)
@click.option("--data", default=None,
              help="Data to evaluate on: 'shapes', 'shapes:N', a folder or a named layout (voc:PATH, "
                   "cityscapes:PATH, coco:PATH, csv:FILE) [default: the run's --data]; its validation split "
                   "is used. A --crop run is scored on whole images at their own size.")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: the run's].")
@click.option("--root", default="saved_models", show_default=True,
              help="Folder searched for RUN, and for the newest run when RUN is omitted.")
@click.option("--crf", is_flag=True,
              help="Segmentation: refine the probabilities with a dense CRF before scoring; writes "
                   "eval_crf.json, confusion_crf.png and RUN/eval_crf/ (needs pydensecrf2).")
@click.option("--long-side", type=int, default=None, metavar="N",
              help="Segmentation, a run trained with --crop: resize each image so its longer side is N "
                   "(aspect kept) before the model; the logits are upsampled to the mask's own size and "
                   "scored there [default: the images at their own size].")
def command(run, data, batch_size, root, crf, long_side):
    """Evaluate RUN (default: the newest run); write RUN/eval.json and RUN/confusion.png.

    \b
    Classification: accuracy, top-5 accuracy, loss, per-class precision and recall.
    Segmentation: mean IoU, pixel accuracy, per-class IoU, loss; a colour mask and an
    overlay PNG per image in RUN/eval/ (RUN/eval_crf/ with --crf).
    \b
    Examples:
      kcv eval
      kcv eval saved_models/lenet5 --data my_photos/
      kcv eval saved_models/fcn32s --crf
      kcv eval saved_models/deeplabv3plus --long-side 512
    """
    from kcv.evaluation.evaluate import CONFUSION_FILE, EVAL_FILE, evaluate_run, output_name

    report, run_dir = evaluate_run(run, data=data, batch_size=batch_size, root=root, crf=crf,
                                   long_side=long_side)
    click.echo(format_report(report))
    masks = f" and masks/overlays in {run_dir / output_name('eval', crf)}/" if "val_miou" in report else ""
    click.echo(f"wrote {run_dir / output_name(EVAL_FILE, crf)}, {run_dir / output_name(CONFUSION_FILE, crf)}{masks}")


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
