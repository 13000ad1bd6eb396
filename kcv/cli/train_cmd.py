"""``kcv train``: train an architecture and write a run directory."""

from __future__ import annotations

import click

from kcv.cli.options import parse_model_args
from kcv.contracts import METRICS_FILE

# With --resume the run's own config is used; only these may be given as well.
RESUME_OPTIONS = {"resume", "epochs", "quiet", "out"}


@click.command("train")
@click.option("--arch", default=None, help="Architecture name (see `kcv models`); required unless --resume.")
@click.option("--data", default="shapes", show_default=True,
              help="'shapes', 'shapes:N' (N training images) or a data folder (docs/design.md §5 layouts).")
@click.option("--epochs", type=int, default=None,
              help="Epochs [default: the architecture's]; with --resume, the new total.")
@click.option("--batch-size", type=int, default=None,
              help="Global batch size (split over replicas) [default: the architecture's].")
@click.option("--img-size", type=int, default=None, help="Square input side in pixels [default: the architecture's].")
@click.option("--lr", type=float, default=None, help="Peak learning rate [default: the architecture's].")
@click.option("--optimizer", default="adam", show_default=True, metavar="adam|sgd|adamw",
              help="Optimizer; sgd uses --momentum and Nesterov.")
@click.option("--schedule", default="constant", show_default=True, metavar="constant|cosine",
              help="Learning-rate schedule: constant, or cosine decay to 0 over the run.")
@click.option("--warmup-epochs", type=float, default=0.0, show_default=True,
              help="Linear learning-rate warm-up from 0 over this many epochs (fractions allowed).")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option("--nesterov/--no-nesterov", default=True, show_default=True, help="Nesterov momentum for sgd.")
@click.option("--weight-decay", type=float, default=None,
              help="Decoupled weight decay, biases and BN excluded [default: 1e-4 for adamw, else 0].")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True,
              help="Label smoothing for classification (targets become one-hot).")
@click.option("--augment", default=None, metavar="POLICY",
              help="Augmentation policy, e.g. 'flip,rotate=15,crop=0.8,cutmix', 'none', or a YAML file "
                   "[default: flip for segmentation, flip,crop=0.8 for classification]. "
                   "See docs/training.md 'Augmentation'.")
@click.option("--patience", type=int, default=None,
              help="Stop early after N epochs without a better validation metric.")
@click.option("--loss", default="ce", show_default=True, metavar="ce|bce|dice|focal|ce+dice",
              help="Loss: cross-entropy, one-vs-rest sigmoid cross-entropy (bce), soft Dice, focal "
                   "(gamma 2) or CE + Dice; segmentation losses ignore mask label 255. Dice is for "
                   "segmentation only.")
@click.option("--class-weights", default=None, metavar="W1,W2,...|auto",
              help="Per-class loss weights, one per class in class order, or 'auto' = inverse "
                   "frequency in the training targets, w_c = N / (C * n_c).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for weights, shuffling, augmentation and splits.")
@click.option("--val-split", type=float, default=0.2, show_default=True,
              help="Validation fraction for DATA/<class>/ folders without train/ and val/.")
@click.option("--precision", default="float32", show_default=True,
              metavar="float32|mixed_float16|mixed_bfloat16",
              help="Compute precision; mixed_float16 uses dynamic loss scaling; weights stay float32.")
@click.option("--jit", is_flag=True, help="Compile the train step with XLA.")
@click.option("--steps-per-execution", type=int, default=1, show_default=True,
              help="Train steps per tf.function call (less Python overhead for small models).")
@click.option("--distribute", default="auto", show_default=True, metavar="auto|none|mirrored|multiworker",
              help="tf.distribute strategy: mirrored = all local GPUs; multiworker = TF_CONFIG cluster, "
                   "same command on every node, the chief writes the run.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard logs to RUN/tensorboard/.")
@click.option("--resume", default=None, metavar="RUN",
              help="Continue RUN (a run directory or its name) at its next epoch, with its config.")
@click.option("--out", default="saved_models", show_default=True, help="Folder that holds run directories.")
@click.option("--name", default=None, help="Run directory name [default: the architecture, suffixed -2, -3...].")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Hyperparameter for the architecture, repeatable (e.g. base_filters=16).")
@click.option("--backbone", default=None, metavar="RUN",
              help="--arch knn only: compare a trained classifier run's penultimate features "
                   "instead of raw pixels.")
@click.option("--pretrained", default=None, metavar="imagenet|RUN|FILE",
              help="Transfer learning: 'imagenet' = keras.applications' ImageNet weights for ARCH (or "
                   "a segmentation model's backbone=), from Keras's cache (`kcv weights`); or a kcv "
                   "run, a .keras / .weights.h5 file, or a keras.applications .h5 file under its own "
                   "name. Layers are matched by name, never by order; a shape mismatch refuses the "
                   "file; the head is freshly initialised (with 1000 classes ImageNet's is loaded).")
@click.option("--freeze-backbone", is_flag=True,
              help="With --pretrained: train only the head (feature extraction); the backbone's "
                   "BatchNorm stays in inference mode.")
@click.option("--backbone-lr-mult", type=float, default=None, metavar="F",
              help="With --pretrained: fine-tune everything, the backbone at F x the head's "
                   "learning rate (e.g. 0.1).")
@click.option("--teacher", default=None, metavar="RUN",
              help="Knowledge distillation from a trained run: loss = A*CE + (1-A)*T^2*KL(teacher/T || "
                   "student/T); only the student is saved and exported.")
@click.option("--temperature", type=float, default=4.0, show_default=True,
              help="Distillation temperature T (with --teacher).")
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="Weight A of the label loss; 1 - A goes to the distillation term (with --teacher).")
@click.option("--unlabeled", default=None, metavar="DIR|shapes[:N]",
              help="With --teacher: also train on these unlabeled images (a flat folder), which get "
                   "the distillation term only.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(quiet, model_args, **flags):
    """Train ARCH on the built-in shapes data or a folder; write saved_models/<name>/.

    \b
    Examples:
      kcv train --arch unet
      kcv train --arch unet --data my_data/ --img-size 128 --model-arg base_filters=32
      kcv train --arch lenet5 --augment flip,crop=0.8,cutmix --schedule cosine --warmup-epochs 1
      kcv train --resume saved_models/unet --epochs 20
      kcv train --arch knn --backbone saved_models/resnet18 --model-arg k=5
      kcv train --arch deeplabv3plus --loss ce+dice --class-weights auto
      kcv train --arch resnet18 --data my_data/ --pretrained saved_models/resnet18 --freeze-backbone
      kcv train --arch resnet50 --data my_data/ --pretrained imagenet --freeze-backbone
      kcv train --arch unet --model-arg backbone=resnet18 --pretrained saved_models/resnet18 --backbone-lr-mult 0.1
      kcv train --arch mobilenet_v2 --teacher saved_models/resnet50 --temperature 4 --alpha 0.5
    """
    import json

    from kcv.errors import KcvError
    from kcv.train import TrainConfig, train

    ctx = click.get_current_context()
    if flags["resume"]:
        given = [p for p in ctx.params if ctx.get_parameter_source(p).name == "COMMANDLINE"]
        extra = [f"--{p.replace('_', '-')}" for p in given if p not in RESUME_OPTIONS]
        if extra:
            raise KcvError(f"{extra[0]}: cannot change a run's config with --resume "
                           f"(only --epochs may be raised)")
    elif not flags["arch"]:
        raise KcvError("--arch is required (see `kcv models`), or --resume RUN")
    cfg = TrainConfig(**flags, model_args=parse_model_args(model_args), verbose=0 if quiet else 1)
    run_dir = train(cfg)
    if run_dir is None:
        click.echo("worker done (the chief writes the run directory)")
        return
    final = json.loads((run_dir / METRICS_FILE).read_text())
    shown = {k: round(v, 4) for k, v in final.items() if k.startswith("val_") and isinstance(v, float)}
    click.echo(f"saved {run_dir}  " + "  ".join(f"{k} {v}" for k, v in shown.items()))
