"""``kcv explain``: Grad-CAM overlays of a classifier run on images."""

from __future__ import annotations

import json
import sys

import click

from kcv.errors import KcvError


@click.command("explain")
@click.argument("args", nargs=-1, required=True, metavar="[RUN] IMAGE_OR_DIR...")
@click.option("--class", "class_name", default=None, metavar="NAME",
              help="Explain this class (a class name of the run, or its index) [default: each image's prediction].")
@click.option("--layer", default=None, metavar="NAME",
              help="Layer whose feature map is explained [default: the last convolutional one before the head].")
@click.option("--out", default=None, help="Folder for <image>_gradcam.png [default: gradcam].")
@click.option("--alpha", type=float, default=0.45, show_default=True, help="Opacity of the heat map over the image.")
@click.option("--root", default="saved_models", show_default=True,
              help="Folder searched for RUN, and for the newest run when RUN is omitted.")
def command(args, class_name, layer, out, alpha, root):
    """Grad-CAM (Selvaraju et al. 2017): where a classifier RUN looks in each image.

    Writes one overlay PNG per image (heat map of the explained class over the image, red =
    strong evidence) into --out and prints a JSON line per image: the explained class and its
    probability, the predicted class, the layer and the overlay file. RUN defaults to the
    newest run under --root; IMAGE_OR_DIR may be files or folders (searched recursively).
    k-NN runs are refused: a nearest-neighbour vote has no gradient.

    \b
    Examples:
      kcv explain photo.jpg
      kcv explain saved_models/resnet18 images/ --class circle --out cams/
      kcv explain saved_models/vgg16 cat.png --layer vgg16_block4_conv3
    """
    from kcv.explain import explain_images
    from kcv.runtime.predict import is_model_arg, list_images

    first = args[0]
    run, inputs = (first, args[1:]) if is_model_arg(first, root) else (None, args)
    if not inputs:
        raise KcvError(f"{first} is a run; name at least one image or folder after it")
    images = list_images(inputs)
    show = len(images) > 1 and sys.stderr.isatty()
    records = explain_images(run, images, out=out, class_name=class_name, layer=layer, root=root, alpha=alpha)
    with click.progressbar(records, length=len(images), file=sys.stderr, label="grad-cam",
                           hidden=not show) as bar:
        for record in bar:
            click.echo(json.dumps(record))
