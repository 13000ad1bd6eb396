"""``kcv export``: write verified deployment files of a run."""

from __future__ import annotations

import click

from kcv.errors import KcvError


@click.command("export")
@click.argument("run", required=False)
@click.option("--tflite", is_flag=True, help="Float32 TFLite file (exports/model_fp32.tflite).")
@click.option("--samples", type=int, default=32, show_default=True,
              help="Validation images used to verify each file against the Keras model.")
def command(run, tflite, samples):
    """Export RUN (default: the newest run under saved_models/) and verify each file.

    Each file is run in its own runtime on validation images and compared with the Keras
    inference model; a float file whose max |Δprob| exceeds 1e-4 is not written and the
    command exits 2. Results go to exports/report.json.
    """
    from kcv.export import export_run

    formats = [name for name, on in (("tflite", tflite),) if on] or ["tflite"]
    result = export_run(run, formats, samples=samples, log=lambda m: click.echo(m, err=True))
    click.echo(format_report(result.report, formats))
    if not result.ok:
        failed = [f for f in formats if result.report["formats"][f]["status"] != "ok"]
        raise KcvError(f"verification failed for {', '.join(failed)}: see {result.report['run']}/exports/report.json")


def format_report(report: dict, formats) -> str:
    """The verification table printed by ``kcv export``."""
    head = f"{'format':<10} {'file':<20} {'MB':>7} {'max|Δprob|':>11} {'agree':>8} {'metric (keras → file)':>26} status"
    lines = [f"{report['run']}/exports  ({report['samples']} validation images)", head, "-" * len(head)]
    for name in formats:
        e = report["formats"][name]
        metric = f"{e['metric']} {e['metric_keras']:.4f} → {e['metric_file']:.4f}"
        lines.append(f"{name:<10} {e['file']:<20} {e['size_mb']:>7.2f} {e['max_abs_diff']:>11.2e} "
                     f"{e['agreement']:>8.2%} {metric:>26} {e['status']}")
    return "\n".join(lines)
