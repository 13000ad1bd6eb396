"""``kcv export``: write verified deployment files of a run."""

from __future__ import annotations

import click

from kcv.errors import KcvError

FORMAT_FLAGS = ("tflite", "fp16", "dynamic", "int8", "onnx", "onnx_int8", "saved_model")


@click.command("export")
@click.argument("run", required=False)
@click.option("--tflite", is_flag=True, help="Float32 TFLite (exports/model_fp32.tflite); the default.")
@click.option("--fp16", is_flag=True, help="Float16-weight TFLite (model_fp16.tflite), half the size.")
@click.option("--dynamic", is_flag=True, help="Dynamic-range TFLite: int8 weights, float activations.")
@click.option("--int8", is_flag=True, help="Full-integer TFLite: int8 weights and activations, uint8 "
                                          "input, calibrated on training images.")
@click.option("--onnx", is_flag=True, help="ONNX via tf2onnx (model.onnx), NHWC float input.")
@click.option("--onnx-int8", "onnx_int8", is_flag=True,
              help="Static int8 ONNX (model_int8.onnx): QDQ, per-channel int8 weights, calibrated like --int8; "
                   "float input and output.")
@click.option("--saved-model", "saved_model", is_flag=True, help="TensorFlow SavedModel (saved_model/).")
@click.option("--all", "all_", is_flag=True, help="Every format above.")
@click.option("--samples", type=int, default=None,
              help="Validation images used to verify each file [default: 200, or all if fewer].")
@click.option("--calib-samples", type=int, default=None,
              help="--int8/--onnx-int8: training images used for calibration [default: 200].")
@click.option("--calib-data", type=str, default=None,
              help="--int8/--onnx-int8: calibrate on the images under this folder instead of the run's training data.")
@click.option("--max-drop", type=float, default=None,
              help="--fp16/--dynamic/--int8/--onnx-int8: largest accepted accuracy (or mIoU) drop, in points "
                   "[default: 1].")
@click.option("--min-agreement", type=float, default=None,
              help="--fp16/--dynamic/--int8/--onnx-int8: smallest accepted share of images (pixels) whose top class "
                   "equals the Keras model's [default: 0.98].")
@click.option("--allow-drop", is_flag=True, default=None,
              help="--fp16/--dynamic/--int8/--onnx-int8: install the file even if it misses --max-drop or "
                   "--min-agreement.")
@click.option("--int8-keep-float", "keep_float", type=str, default=None,
              help="--int8: keep layers in float: 'auto' (the worst layers by quantization error until "
                   "the drop is within --max-drop) or comma-separated Keras layer names.")
@click.option("--int8-io", "int8_io", type=click.Choice(["uint8", "int8", "float"]), default=None,
              help="--int8: output tensor type; the input is always uint8 raw pixels (scale 1, zero point 0) "
                   "[default: uint8, what MediaPipe Tasks and the Edge TPU take].")
@click.option("--check", "checks", type=click.Choice(["mediapipe"]), multiple=True,
              help="Also load each .tflite file in MediaPipe Tasks (ImageClassifier / ImageSegmenter) and "
                   "require >= 99% agreement with LiteRT; recorded in report.json (needs: pip install mediapipe).")
@click.option("--allow-flex", is_flag=True,
              help="Accept TFLite files that need Flex (select TensorFlow) ops; refused by default.")
@click.option("--opset", type=int, default=None, help="--onnx: ONNX opset (13-18) [default: tf2onnx's, 15].")
def command(run, tflite, fp16, dynamic, int8, onnx, onnx_int8, saved_model, all_, samples, calib_samples, calib_data,
            max_drop, min_agreement, allow_drop, keep_float, int8_io, checks, allow_flex, opset):
    """Export RUN (default: the newest run under saved_models/) and verify each file.

    Each file is run in its own runtime (LiteRT, onnxruntime, TensorFlow) on validation
    images and compared with the Keras inference model. A float file whose max |Δprob|
    exceeds 1e-4, an fp16/dynamic/int8 file whose top class agrees with Keras on fewer than
    --min-agreement of the images (pixels) or whose metric drops more than --max-drop
    points (unless the model is too weak for its metric to judge: the report says so), or
    a file needing Flex ops without --allow-flex is not written and the command exits 2.
    Every .tflite carries TFLite Metadata (labels, normalisation) for MediaPipe Tasks.
    Results go to exports/report.json and report.md.

    \b
    Examples:
      kcv export                      # model_fp32.tflite
      kcv export --int8 --onnx        # full-int8 TFLite and ONNX
      kcv export --int8 --int8-keep-float auto
      kcv export --onnx-int8              # static int8 ONNX for onnxruntime / TensorRT
      kcv export --all
    """
    from kcv.export import ExportOptions, export_run

    chosen = dict(zip(FORMAT_FLAGS, (tflite, fp16, dynamic, int8, onnx, onnx_int8, saved_model)))
    formats = list(FORMAT_FLAGS) if all_ else [name for name, on in chosen.items() if on] or ["tflite"]
    flags = {"samples": samples, "calib_samples": calib_samples, "calib_data": calib_data,
             "max_drop": max_drop, "allow_drop": allow_drop, "keep_float": keep_float, "opset": opset,
             "int8_io": int8_io, "min_agreement": min_agreement}
    given = {k for k, v in flags.items() if v is not None}
    options = ExportOptions(**{k: v for k, v in flags.items() if v is not None}, allow_flex=allow_flex,
                            checks=tuple(checks))
    result = export_run(run, formats, options, given=given, log=lambda m: click.echo(m, err=True))
    click.echo(format_report(result.report, formats))
    if not result.ok:
        raise KcvError("; ".join(f"{name}: {reason}" for name, reason in result.failed)
                       + f" (see {result.report['run']}/exports/report.json)")


def format_report(report: dict, formats) -> str:
    """The verification table printed by ``kcv export``, then int8 triage and kept layers."""
    head = (f"{'format':<12} {'file':<20} {'MB':>8} {'×fp32':>6} {'max|Δprob|':>11} {'agree':>8} "
            f"{'metric (keras → file)':>28} status")
    lines = [f"{report['run']}/exports  ({report['samples']} validation images)", head, "-" * len(head)]
    for name in formats:
        e = report["formats"][name]
        if "metric" not in e:
            lines.append(f"{name:<12} {'-':<20} {'':>8} {'':>6} {'':>11} {'':>8} {'':>28} {e['status']}")
            continue
        metric = f"{e['metric']} {e['metric_keras']:.4f} → {e['metric_file']:.4f}"
        ratio = f"{e['size_vs_fp32']:.2f}" if "size_vs_fp32" in e else ""
        lines.append(f"{name:<12} {e['file']:<20} {e['size_mb']:>8.3f} {ratio:>6} {e['max_abs_diff']:>11.2e} "
                     f"{e['agreement']:>8.2%} {metric:>28} {e['status']}")
    for name in formats:
        e = report["formats"][name]
        if e.get("flex") or e.get("gpu_unsupported") or e.get("nnapi_unsupported"):
            lines.append(f"{name}: ops needing Flex: {', '.join(e.get('flex', [])) or 'none'}; "
                         f"not on GPU delegate: {', '.join(e.get('gpu_unsupported', [])) or 'none'}; "
                         f"not on NNAPI: {', '.join(e.get('nnapi_unsupported', [])) or 'none'}")
        if e.get("note"):
            lines.append(f"{name}: {e['note']}")
        if e.get("mediapipe"):
            m = e["mediapipe"]
            lines.append(f"{name}: MediaPipe Tasks: " + (f"refused the file ({m['error']})" if "error" in m else
                         f"agrees with LiteRT on {m['agreement']:.2%}" + ("" if m.get("labels_ok", True)
                                                                          else ", labels differ")))
        if e.get("ties"):
            lines.append(f"{name}: {e['ties']} image(s) at a {e['tie_rule']} left out of max|Δprob| "
                         f"(there: {e['max_abs_diff_ties']:.2e})")
        if e.get("kept_float"):
            kept = ", ".join(f"{k['layer']} ({k['op']}, rmse/scale {k['rmse_scale']:.2f})" for k in e["kept_float"])
            lines.append(f"{name}: kept in float: {kept}")
        if e.get("worst_layers"):
            lines.append(f"{name}: largest quantization errors (rmse/scale; ~0.29 is rounding noise):")
            lines += [f"    {k['rmse_scale']:6.2f}  {k['op']:<16} {k['layer']}" for k in e["worst_layers"]]
            if not e.get("kept_float"):
                lines.append("    rerun with --int8-keep-float auto to keep the worst of them in float")
    return "\n".join(lines)
