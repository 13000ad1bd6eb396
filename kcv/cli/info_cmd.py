"""``kcv info``: one architecture's layers, parameters, MACs and receptive field."""

from __future__ import annotations

import click

from kcv.cli.options import parse_model_args


@click.command("info")
@click.argument("arch")
@click.option("--img-size", type=int, default=224, show_default=True,
              help="Square input side in pixels the model is built for.")
@click.option("--num-classes", type=int, default=None,
              help="Output classes [default: 1000 for classification, 21 for segmentation].")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Hyperparameter for the architecture, repeatable (e.g. output_stride=16).")
@click.option("--no-layers", is_flag=True, help="Print only the totals and the receptive field.")
def command(arch, img_size, num_classes, model_args, no_layers):
    """Print ARCH's layer table (type, output shape, params, MACs, receptive field), its
    parameter and MAC totals, and the receptive field of its last feature map.

    \b
    The receptive field is the theoretical one, grown layer by layer through convolutions
    and pools (kernel, stride, dilation; deformable convolutions count as their kernel).
    Example:
      kcv info resnet50 --img-size 224
      kcv info resnet50 --model-arg output_stride=16 --no-layers
    """
    from kcv.errors import KcvError
    from kcv.models.analysis import info_report

    if num_classes is not None and num_classes < 2:
        raise KcvError(f"--num-classes {num_classes}: must be at least 2")
    click.echo(info_report(arch, img_size, num_classes, parse_model_args(model_args),
                           show_layers=not no_layers))
