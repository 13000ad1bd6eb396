"""``kcv models``: the registry as a table."""

from __future__ import annotations

import click


@click.command("models")
@click.option("--task", type=click.Choice(["classification", "segmentation"]), default=None,
              help="Only list models of this task.")
def command(task):
    """List every architecture: name, task, family, parameters and GFLOPs at 224×224.

    Parameters are counted for 1000 classes (classification) or 21 classes
    (segmentation, the PASCAL VOC count). GFLOPs are multiply–accumulates, the convention
    of the papers and torchvision.
    """
    from kcv.models.analysis import registry_table

    click.echo(registry_table(task))
