"""``kcv benchmark``: size, metric and latency of every verified export of a run, or of one
``.tflite`` / ``.onnx`` file (without TensorFlow)."""

from __future__ import annotations

import click


@click.command("benchmark")
@click.argument("run", required=False)
@click.argument("images", nargs=-1)
@click.option("--formats", type=str, default=None,
              help="Comma-separated: keras, tflite, fp16, dynamic, int8, onnx, saved_model "
                   "[default: keras and every verified export].")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads for every runtime.")
@click.option("--runs", "runs_", type=int, default=50, show_default=True, help="Timed batch-1 calls per format.")
@click.option("--samples", type=int, default=200, show_default=True,
              help="Validation images for the metric column.")
def command(run, images, formats, threads, runs_, samples):
    """Benchmark RUN (default: the newest run): one row per format, Keras included.

    Size, task metric and its change vs Keras, batch-1 latency p50/p95 (LiteRT with
    XNNPACK, onnxruntime, Keras via tf.function), init time and peak RSS added. Written to
    exports/report.md and exports/report.json. Run `kcv export` first.

    RUN may instead be a .tflite or .onnx file, optionally followed by IMAGES (files or
    folders) to time it on: size, latency, init time and peak memory, printed only. This
    needs no TensorFlow (docs/deploy.md).

    \b
    Examples:
      kcv benchmark saved_models/unet
      kcv benchmark saved_models/unet/exports/model_int8.tflite photos/
    """
    from pathlib import Path

    from kcv.errors import KcvError
    from kcv.export.report import benchmark_table
    from kcv.runtime.bench import benchmark_file, benchmark_run

    if run is not None and Path(run).suffix.lower() in (".tflite", ".onnx"):
        if formats is not None:
            raise KcvError(f"--formats applies to a run; {run} is a single file")
        from kcv.runtime.predict import list_images

        section = benchmark_file(run, list_images(images) if images else (), threads=threads, runs_=runs_)
        click.echo(benchmark_table(section))
        return
    if images:
        raise KcvError(f"{images[0]}: images follow a .tflite or .onnx file; "
                       f"a run is benchmarked on its validation split")
    if run is not None and Path(run).suffix.lower() == ".keras":
        raise KcvError(f"{run}: benchmark the run that holds it ({Path(run).parent})")
    import kcv

    kcv.load_keras("kcv benchmark on a run")  # a run's rows need its validation data and the Keras model
    names = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    section = benchmark_run(run, names, threads=threads, runs_=runs_, samples=samples,
                            log=lambda m: click.echo(m, err=True))
    click.echo(benchmark_table(section))
