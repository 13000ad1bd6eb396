"""``kcv self-train``: pseudo-labels and Noisy Student self-training rounds."""

from __future__ import annotations

import click

from kcv.options import CORE, SELF_TRAIN, TRANSFER, VERBOSITY, click_options, config_kwargs

# train's options, less those that mean nothing here: a self-training run does not resume,
# --backbone is for models fitted from references, which cannot be students, and --patience
# is self-training's own (rounds without a better model, not epochs).
GROUPS, EXCLUDED = (CORE, TRANSFER, SELF_TRAIN, VERBOSITY), ("resume", "backbone", "patience")
# The same options, worded for round 0 (the students take the --student-* and --noise ones).
WORDING = {
    "arch": {"required": True, "help": "Teacher architecture (round 0), see `kcv models`."},
    "epochs": {"help": "Teacher's epochs [default: the architecture's]."},
    "augment": {"help": "Teacher's augmentation [default: the task's]."},
    "model_args": {"help": "Teacher's hyperparameter, repeatable (e.g. base_filters=16)."},
    "name": {"help": "Run directory name [default: ARCH-selftrain]."},
}


@click.command("self-train")
@click_options(*GROUPS, exclude=EXCLUDED, overrides=WORDING)
def command(**params):
    """Noisy Student self-training: teacher -> pseudo-labels -> noisy student, ROUNDS times.

    Writes saved_models/<name>/ with rounds/round0 (the teacher), rounds/round1..N (the
    students), summary.csv/summary.md, and the model.keras and metrics.json of the best
    round on validation (teacher included), so `kcv eval/export/predict` take the run like
    any other.

    \b
    Examples:
      kcv self-train --arch resnet18 --data my_data/ --unlabeled my_unlabeled/ --rounds 2
      kcv self-train --arch efficientnet_b0 --student-arch efficientnet_b1 --threshold 0.7 --soft
      kcv self-train --arch resnet18 --data few_labels/ --pretrained saved_models/resnet18 --backbone-lr-mult 0.1
    """
    from kcv.train import TrainConfig
    from kcv.train.self_training import SelfTrainConfig, self_train, summary_table
    from kcv import runs

    base = TrainConfig(**config_kwargs(params, CORE, TRANSFER, VERBOSITY))
    cfg = SelfTrainConfig(base, **config_kwargs(params, SELF_TRAIN))
    run_dir = self_train(cfg)
    rows = runs.load_config(run_dir)["self_training"]["summary"]
    click.echo(summary_table(rows))
    info = runs.load_config(run_dir)["self_training"]
    click.echo(f"result: {info['reason']}")
    click.echo(f"saved {run_dir} (round {info['chosen_round']}'s model.keras and metrics.json)")
