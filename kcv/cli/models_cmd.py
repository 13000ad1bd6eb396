"""``kcv models``: the registry as a table."""

from __future__ import annotations

import click


@click.command("models")
@click.argument("names", nargs=-1)
@click.option("--task", type=click.Choice(["classification", "segmentation"]), default=None,
              help="Only list models of this task.")
@click.option("--markdown", is_flag=True,
              help="Print the docs/models.md model table: our params and GFLOPs beside the reference "
                   "figures (torchvision, keras.applications, papers) and the % difference.")
@click.option("--no-cache", is_flag=True,
              help="Rebuild every model instead of reading $KCV_CACHE_DIR (default ~/.cache/kcv).")
def command(names, task, markdown, no_cache):
    """List every architecture (or only NAMES): name, task, family, parameters and GFLOPs at 224,
    and "imagenet": yes = keras.applications ImageNet weights (`--pretrained imagenet`),
    backbone = a segmentation model that takes them for its `backbone=`.

    Parameters are counted for 1000 classes (classification) or 21 classes
    (segmentation, the PASCAL VOC count); "params" is the Keras total (BatchNorm moving
    statistics included), "trainable" what torchvision counts. GFLOPs are
    multiply–accumulates, the convention of the papers and torchvision. Rows are cached per
    kcv version and model source, so only the first call builds every model.
    """
    from kcv.models import catalog

    def progress(name, i, n):
        click.echo(f"building {name} at 224 px ({i}/{n}) ...", err=True)

    make = catalog.markdown_table if markdown else catalog.registry_table
    click.echo(make(task, use_cache=not no_cache, progress=progress, names=names))
