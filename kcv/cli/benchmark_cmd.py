"""``kcv benchmark``: size, metric and latency of every verified export of a run."""

from __future__ import annotations

import click


@click.command("benchmark")
@click.argument("run", required=False)
@click.option("--formats", type=str, default=None,
              help="Comma-separated: keras, tflite, fp16, dynamic, int8, onnx, saved_model "
                   "[default: keras and every verified export].")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads for every runtime.")
@click.option("--runs", "runs_", type=int, default=50, show_default=True, help="Timed batch-1 calls per format.")
@click.option("--samples", type=int, default=200, show_default=True,
              help="Validation images for the metric column.")
def command(run, formats, threads, runs_, samples):
    """Benchmark RUN (default: the newest run): one row per format, Keras included.

    Size, task metric and its change vs Keras, batch-1 latency p50/p95 (LiteRT with
    XNNPACK, onnxruntime, Keras via tf.function), init time and peak RSS added. Written to
    exports/report.md and exports/report.json. Run `kcv export` first.
    """
    from kcv.export.report import benchmark_table
    from kcv.runtime.bench import benchmark_run

    names = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    section = benchmark_run(run, names, threads=threads, runs_=runs_, samples=samples,
                            log=lambda m: click.echo(m, err=True))
    click.echo(benchmark_table(section))
