"""``kcv compare``: trained runs side by side, accuracy against GFLOPs."""

from __future__ import annotations

import click


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("--out", default=None,
              help="Chart PNG; the markdown table is written beside it as .md [default: compare.png].")
@click.option("--root", default="saved_models", show_default=True, help="Folder searched for RUN names.")
def command(runs, out, root):
    """Compare trained RUNs: validation accuracy (mIoU for segmentation runs) against GFLOPs,
    bubble area proportional to parameters — as a chart and as a markdown table.

    Parameters and GFLOPs (multiply–accumulates, as the papers count them) are those of each
    run's deployable model at the run's own --img-size. The table is printed and written
    beside the chart.

    \b
    Examples:
      kcv compare saved_models/lenet5 saved_models/resnet18 saved_models/mobilenet_v2
      kcv compare lenet5 resnet18 --out docs/compare.png
    """
    from kcv.compare import compare_runs

    table, chart, md = compare_runs(runs, out=out, root=root)
    click.echo(table)
    click.echo(f"wrote {chart} and {md}")
