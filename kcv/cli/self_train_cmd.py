"""``kcv self-train``: pseudo-labels and Noisy Student self-training rounds."""

from __future__ import annotations

import click

from kcv.cli.options import parse_model_args


@click.command("self-train")
@click.option("--arch", required=True, help="Teacher architecture (round 0), see `kcv models`.")
@click.option("--data", default="shapes", show_default=True,
              help="Labelled data: 'shapes', 'shapes:N' or a data folder (docs/design.md §5 layouts).")
@click.option("--unlabeled", default="shapes", show_default=True, metavar="DIR|shapes[:N]",
              help="Unlabeled images: a flat folder, or N images of the built-in shapes' own unlabeled split.")
@click.option("--rounds", type=int, default=1, show_default=True,
              help="Student rounds; each student becomes the next round's teacher.")
@click.option("--threshold", type=float, default=0.8, show_default=True,
              help="Drop pseudo-labels whose confidence (max probability; per pixel for segmentation) is lower.")
@click.option("--soft/--hard", default=False, show_default=True,
              help="Soft targets (the teacher's probabilities; classification) or hard (argmax) pseudo-labels.")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="Classification: as many pseudo-labels per class (the most confident of a large "
                   "class, repeats of a small one), as Noisy Student does.")
@click.option("--teacher", default=None, metavar="RUN",
              help="Start from this trained run instead of training round 0 on the labels.")
@click.option("--student-arch", default=None, help="Students' architecture, equal or larger [default: --arch].")
@click.option("--student-model-arg", "student_model_args", multiple=True, metavar="KEY=VALUE",
              help="Students' hyperparameter, repeatable (e.g. dropout=0.5) [default: the --model-arg values].")
@click.option("--student-epochs", type=int, default=None, help="Students' epochs [default: --epochs].")
@click.option("--noise", default="flip,crop=0.8,randaugment=2x9", show_default=True, metavar="POLICY",
              help="Students' input noise (an --augment policy); dropout and stochastic depth come "
                   "from the architecture.")
@click.option("--epochs", type=int, default=None, help="Teacher's epochs [default: the architecture's].")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: the architecture's].")
@click.option("--img-size", type=int, default=None,
              help="Input side in pixels, every round [default: the architecture's].")
@click.option("--lr", type=float, default=None, help="Learning rate [default: the architecture's].")
@click.option("--optimizer", default="adam", show_default=True, metavar="adam|sgd|adamw", help="Optimizer.")
@click.option("--augment", default=None, metavar="POLICY", help="Teacher's augmentation [default: the task's].")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Teacher's hyperparameter, repeatable (e.g. base_filters=16).")
@click.option("--pretrained", default=None, metavar="RUN|FILE",
              help="Start the teacher and every student from these weights (see `kcv train --pretrained`).")
@click.option("--freeze-backbone", is_flag=True, help="With --pretrained: train only the heads.")
@click.option("--backbone-lr-mult", type=float, default=None, metavar="F",
              help="With --pretrained: the backbone learns at F x the head's rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, shuffling and augmentation.")
@click.option("--val-split", type=float, default=0.2, show_default=True,
              help="Validation fraction for DATA/<class>/ folders without train/ and val/.")
@click.option("--out", default="saved_models", show_default=True, help="Folder that holds run directories.")
@click.option("--name", default=None, help="Run directory name [default: ARCH-selftrain].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(unlabeled, rounds, threshold, soft, balance, teacher, student_arch, student_model_args,
            student_epochs, noise, model_args, quiet, **flags):
    """Noisy Student self-training: teacher -> pseudo-labels -> noisy student, ROUNDS times.

    Writes saved_models/<name>/ with rounds/round0 (the teacher), rounds/round1..N (the
    students), summary.csv/summary.md, and the final student's model.keras and
    metrics.json, so `kcv eval/export/predict` take the run like any other.

    \b
    Examples:
      kcv self-train --arch resnet18 --data my_data/ --unlabeled my_unlabeled/ --rounds 2
      kcv self-train --arch efficientnet_b0 --student-arch efficientnet_b1 --threshold 0.7 --soft
      kcv self-train --arch resnet18 --data few_labels/ --pretrained saved_models/resnet18 --backbone-lr-mult 0.1
    """
    from kcv.train import TrainConfig
    from kcv.train.self_training import SelfTrainConfig, self_train, summary_table
    from kcv import runs

    base = TrainConfig(**flags, model_args=parse_model_args(model_args), verbose=0 if quiet else 1)
    cfg = SelfTrainConfig(base, unlabeled=unlabeled, rounds=rounds, threshold=threshold, soft=soft,
                          balance=balance, teacher=teacher, student_arch=student_arch,
                          student_model_args=parse_model_args(student_model_args) if student_model_args else None,
                          student_epochs=student_epochs, noise=noise)
    run_dir = self_train(cfg)
    rows = runs.load_config(run_dir)["self_training"]["summary"]
    click.echo(summary_table(rows))
    click.echo(f"saved {run_dir} (the final student's model.keras and metrics.json)")
