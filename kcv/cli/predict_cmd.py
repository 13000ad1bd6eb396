"""``kcv predict``: run a model (run, .keras, .tflite or .onnx) on images."""

from __future__ import annotations

import json
import sys

import click

from kcv.errors import KcvError


@click.command("predict")
@click.argument("args", nargs=-1, required=True, metavar="[RUN|MODEL_FILE] IMAGE_OR_DIR...")
@click.option("--out", type=str, default=None,
              help="Segmentation: folder for <image>_mask.png and <image>_overlay.png [default: predictions].")
@click.option("--top-k", type=int, default=5, show_default=True, help="Classification: labels per image.")
@click.option("--runtime", type=click.Choice(["keras", "tflite", "onnx"]), default=None,
              help="On a RUN: which runtime to use [default: the fastest verified one in exports/report.json].")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads for LiteRT/onnxruntime.")
@click.option("--img-size", type=int, default=None,
              help="Input size for a model file that accepts any size and has no run config.")
@click.option("--crf", is_flag=True,
              help="Segmentation: refine the probabilities with a dense CRF before the argmax "
                   "(needs pydensecrf2: pip install 'kcv[crf]').")
def command(args, out, top_k, runtime, threads, img_size, crf):
    """Predict IMAGE_OR_DIR... (files, or folders searched recursively) with a model.

    The first argument may be a run directory or a .keras/.tflite/.onnx file; without one
    the newest run under saved_models/ is used. Classification prints one JSON line per
    image (file, top-k labels and probabilities); segmentation writes a palette mask PNG
    (pixel = class index) and an overlay PNG per image into --out and prints a JSON line
    per image. A progress bar goes to stderr.

    \b
    Examples:
      kcv predict photo.jpg                                  # newest run, fastest runtime
      kcv predict saved_models/unet images/ --out masks/
      kcv predict saved_models/cnn/exports/model_int8.tflite a.png b.png --top-k 2
      kcv predict saved_models/fcn32s images/ --crf
    """
    from kcv.runtime.predict import is_model_arg, list_images, open_predictor, predict_images

    model, inputs = (args[0], args[1:]) if is_model_arg(args[0]) else (None, args)
    if not inputs:
        raise KcvError(f"{args[0]} is a model; name at least one image or folder after it")
    images = list_images(inputs)
    predictor = open_predictor(model, runtime=runtime, img_size=img_size, num_threads=threads)
    postprocess = None
    if crf:
        from kcv.postprocess.crf import crf_postprocess

        if predictor.task != "segmentation":
            raise KcvError(f"--crf refines segmentation masks; {predictor.model_path} is a classifier")
        postprocess = crf_postprocess()
    click.echo(f"{predictor.model_path} ({predictor.runtime}, {predictor.task}) on {len(images)} image(s)"
               + (" + dense CRF" if crf else ""), err=True)
    results = predict_images(predictor, images, out=out, top_k=top_k, postprocess=postprocess)
    show = len(images) > 1 and sys.stderr.isatty()
    with click.progressbar(results, length=len(images), file=sys.stderr, label="predicting",
                           hidden=not show) as bar:
        for result in bar:
            click.echo(json.dumps(result.record))
