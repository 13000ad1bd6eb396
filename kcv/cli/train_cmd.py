"""``kcv train``: train an architecture and write a run directory."""

from __future__ import annotations

import click

from kcv.contracts import METRICS_FILE
from kcv.options import CORE, DISTILL, TRANSFER, VERBOSITY, click_options, config_kwargs, options

GROUPS = (CORE, TRANSFER, DISTILL, VERBOSITY)


@click.command("train")
@click_options(*GROUPS)
def command(**params):
    """Train ARCH on the built-in shapes data or a folder; write saved_models/<name>/.

    \b
    Examples:
      kcv train --arch unet
      kcv train --arch unet --data my_data/ --img-size 128 --model-arg base_filters=32
      kcv train --arch lenet5 --augment flip,crop=0.8,cutmix --schedule cosine --warmup-epochs 1
      kcv train --resume saved_models/unet --epochs 20
      kcv train --arch knn --backbone saved_models/resnet18 --model-arg k=5
      kcv train --arch deeplabv3plus --loss ce+dice --class-weights auto
      kcv train --arch deeplabv3plus --data voc:VOCdevkit/VOC2012 --crop 320 --scale 0.5,2.0
      kcv train --arch resnet18 --data my_data/ --pretrained saved_models/resnet18 --freeze-backbone
      kcv train --arch resnet50 --data my_data/ --pretrained imagenet --freeze-backbone
      kcv train --arch unet --model-arg backbone=resnet18 --pretrained saved_models/resnet18 --backbone-lr-mult 0.1
      kcv train --arch mobilenet_v2 --teacher saved_models/resnet50 --temperature 4 --alpha 0.5
    """
    import json

    from kcv.errors import KcvError
    from kcv.train import TrainConfig, train

    ctx = click.get_current_context()
    if params["resume"]:
        # With --resume the run's own config is used; only options marked with_resume may be given.
        schema = options(*GROUPS)
        given = [schema[p] for p in ctx.params if ctx.get_parameter_source(p).name == "COMMANDLINE"]
        extra = [o.cli_flag for o in given if not o.with_resume]
        if extra:
            raise KcvError(f"{extra[0]}: cannot change a run's config with --resume "
                           f"(only --epochs may be raised)")
    elif not params["arch"]:
        raise KcvError("--arch is required (see `kcv models`), or --resume RUN")
    cfg = TrainConfig(**config_kwargs(params, *GROUPS))
    run_dir = train(cfg)
    if run_dir is None:
        click.echo("worker done (the chief writes the run directory)")
        return
    final = json.loads((run_dir / METRICS_FILE).read_text())
    shown = {k: round(v, 4) for k, v in final.items() if k.startswith("val_") and isinstance(v, float)}
    click.echo(f"saved {run_dir}  " + "  ".join(f"{k} {v}" for k, v in shown.items()))
    report = final.get("distillation")
    if report:
        line = f"distillation: {report['metric']} student {report['student']:.4f}  teacher {report['teacher']:.4f}"
        if "baseline" in report:
            line += f"  without --teacher {report['baseline']:.4f} ({report['gain']:+.4f})"
        click.echo(line)
        for warning in report["warnings"]:
            click.echo(f"warning: {warning}", err=True)
