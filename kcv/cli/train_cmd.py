"""``kcv train``: train an architecture and write a run directory."""

from __future__ import annotations

import click

from kcv.cli.options import parse_model_args


@click.command("train")
@click.option("--arch", required=True, help="Architecture name (see `kcv models`).")
@click.option("--data", default="shapes", show_default=True,
              help="'shapes', 'shapes:N' (N training images) or a data folder (DESIGN §5 layouts).")
@click.option("--epochs", type=int, default=None, help="Epochs [default: the architecture's].")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: the architecture's].")
@click.option("--img-size", type=int, default=None, help="Square input side in pixels [default: the architecture's].")
@click.option("--lr", type=float, default=None, help="Learning rate [default: the architecture's].")
@click.option("--optimizer", type=click.Choice(["adam", "sgd", "adamw"]), default="adam", show_default=True)
@click.option("--loss", default="ce", show_default=True, help="Loss function.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, shuffling and splits.")
@click.option("--val-split", type=float, default=0.2, show_default=True,
              help="Validation fraction for DATA/<class>/ folders without train/ and val/.")
@click.option("--out", default="saved_models", show_default=True, help="Folder that holds run directories.")
@click.option("--name", default=None, help="Run directory name [default: the architecture, suffixed -2, -3...].")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Hyperparameter for the architecture, repeatable (e.g. base_filters=16).")
@click.option("--backbone", default=None, metavar="RUN",
              help="--arch knn only: compare a trained classifier run's penultimate features "
                   "instead of raw pixels.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(arch, data, epochs, batch_size, img_size, lr, optimizer, loss, seed, val_split,
            out, name, model_args, backbone, quiet):
    """Train ARCH on the built-in shapes data or a folder; write saved_models/<name>/.

    \b
    Example:
      kcv train --arch unet
      kcv train --arch unet --data my_data/ --img-size 128 --model-arg base_filters=32
      kcv train --arch knn --backbone saved_models/resnet18 --model-arg k=5
    """
    import json

    from kcv.train import TrainConfig, train

    cfg = TrainConfig(arch=arch, data=data, epochs=epochs, batch_size=batch_size, img_size=img_size,
                      lr=lr, optimizer=optimizer, loss=loss, seed=seed, val_split=val_split,
                      out=out, name=name, model_args=parse_model_args(model_args),
                      backbone=backbone, verbose=0 if quiet else 1)
    run_dir = train(cfg)
    final = json.loads((run_dir / "metrics.json").read_text())
    shown = {k: round(v, 4) for k, v in final.items() if k.startswith("val_") and isinstance(v, float)}
    click.echo(f"saved {run_dir}  " + "  ".join(f"{k} {v}" for k, v in shown.items()))
