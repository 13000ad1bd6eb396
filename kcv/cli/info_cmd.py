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
@click.option("--draw", is_flag=True,
              help="Also draw the receptive field of one output unit on an input-sized canvas (PNG).")
@click.option("--out", default=None, help="With --draw: the PNG to write [default: rf_<ARCH>.png].")
@click.option("--unit", default=None, metavar="ROW,COL",
              help="With --draw: the unit drawn [default: the centre unit of the map].")
@click.option("--layer", default=None, metavar="NAME",
              help="With --draw: the layer whose unit is drawn [default: the last feature map].")
def command(arch, img_size, num_classes, model_args, no_layers, draw, out, unit, layer):
    """Print ARCH's layer table (type, output shape, params, MACs, receptive field), its
    parameter and MAC totals, and the receptive field of its last feature map.

    \b
    The receptive field is the theoretical one, grown layer by layer through convolutions
    and pools (kernel, stride, dilation; deformable convolutions count as their kernel).
    --draw draws it for one unit as a square on the input, over the unit's effective field
    (|gradient| of the untrained model), beside the numbers.
    Example:
      kcv info resnet50 --img-size 224
      kcv info resnet50 --model-arg output_stride=16 --no-layers
      kcv info vgg16 --no-layers --draw --unit 0,0 --out rf.png
    """
    from kcv.errors import KcvError
    from kcv.viz.receptive_field import info_with_drawing, parse_unit

    if num_classes is not None and num_classes < 2:
        raise KcvError(f"--num-classes {num_classes}: must be at least 2")
    if out is not None and not draw:
        raise KcvError("--out names the --draw picture; add --draw")
    path = (out or f"rf_{arch}.png") if draw else None
    report, drawn = info_with_drawing(arch, img_size, num_classes, parse_model_args(model_args),
                                      show_layers=not no_layers, draw=path, unit=parse_unit(unit), layer=layer)
    click.echo(report)
    if drawn is not None:
        click.echo(f"wrote {drawn}")
