"""``kcv augment-preview``: see what an augmentation policy does before training with it."""

from __future__ import annotations

import click


@click.command("augment-preview")
@click.option("--augment", "policy", default=None, metavar="POLICY",
              help="Policy string or YAML file, as for `kcv train --augment` [default: the task's].")
@click.option("--task", default="segmentation", show_default=True, metavar="classification|segmentation",
              help="Preview images with labels or with masks.")
@click.option("--data", default="shapes", show_default=True, help="'shapes' or a data folder (training split).")
@click.option("--img-size", type=int, default=96, show_default=True, help="Image side in pixels.")
@click.option("--samples", type=int, default=6, show_default=True, help="Images (columns) in the grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the augmentation draw.")
@click.option("--out", default="augment_preview.png", show_default=True, help="PNG file to write.")
def command(policy, task, data, img_size, samples, seed, out):
    """Write a grid PNG: original images (and masks), then the same images augmented.

    \b
    Example:
      kcv augment-preview --augment flip,rotate=30,cutmix --out preview.png
    """
    from kcv.augment.preview import preview

    path = preview(policy, task=task, data=data, img_size=img_size, samples=samples, seed=seed, out=out)
    click.echo(f"wrote {path}")
