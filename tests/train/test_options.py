"""One option schema (:mod:`kcv.options`): the click options, the config dataclasses
and the value checks all come from it; a technique is a fresh object per run."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from kcv.cli.self_train_cmd import EXCLUDED
from kcv.cli.train_cmd import command as train_command
from kcv.errors import KcvError
from kcv.registry import get_spec
from kcv import options
from kcv.train import loop
from kcv.train.distill import DistillPlugin
from kcv.train.self_training import SelfTrainConfig
from kcv.train.transfer import TransferPlugin
from kcv.train.loop import TrainConfig, TrainPlugin
from tests.conftest import run_cli


def test_every_config_field_is_one_schema_option():
    assert [f.name for f in dataclasses.fields(TrainConfig)] == list(options.options())
    assert [f.name for f in dataclasses.fields(SelfTrainConfig)] == ["base", *options.options(options.SELF_TRAIN)]
    for f in dataclasses.fields(TrainConfig):
        o = options.options()[f.name]
        assert (f.default_factory() if o.factory else f.default) == o.default_value()


def test_train_click_options_come_from_the_schema():
    params = {p.name: p for p in train_command.params}
    schema = {n: o for n, o in options.options().items() if o.cli}
    assert set(params) == set(schema)
    for name, o in schema.items():
        p = params[name]
        assert o.cli_flag in p.opts and p.help == o.help
        if not p.multiple and not p.is_flag:
            assert p.default == o.default


def test_a_new_option_reaches_click_the_config_and_the_checks():
    """What "adding a training option" means: one Option, and the command line, the
    dataclass and the range check follow."""
    group = (options.Option("gamma", float, 2.0, within="[0, inf)", help="Focal gamma."),
             options.Option("head", default="linear", choices=("linear", "mlp"), help="Head."))
    Config = options.config_class("Config", (group,))

    @click.command()
    @options.click_options(group)
    def cmd(**params):
        cfg = Config(**options.config_kwargs(params, group))
        options.check_values(cfg, group)
        click.echo(f"{cfg.gamma} {cfg.head}")

    assert CliRunner().invoke(cmd, ["--gamma", "0.5"]).output == "0.5 linear\n"
    assert "Focal gamma.  [default: 2.0]" in CliRunner().invoke(cmd, ["--help"]).output
    assert "--head linear|mlp" in CliRunner().invoke(cmd, ["--help"]).output
    with pytest.raises(KcvError, match=r"^--gamma -1.0: must be >= 0$"):
        options.check_values(Config(gamma=-1.0), group)
    with pytest.raises(KcvError, match=r"^--head 'deep': choose one of linear, mlp$"):
        options.check_values(Config(head="deep"), group)


def test_self_train_help_lists_the_train_options(capsys):
    code, out, _ = run_cli(["self-train", "--help"], capsys)
    assert code == 0
    listed = {o.cli_flag for o in options.options(options.CORE, options.TRANSFER, options.VERBOSITY).values()
              if o.cli and o.name not in EXCLUDED}
    missing = [flag for flag in listed if f"  {flag} " not in out and f"  {flag} /" not in out]
    assert not missing and len(listed) >= 30
    assert "--resume" not in out and "--temperature" not in out  # excluded: distillation, resume
    assert "Stop after N students in a row" in out  # --patience is self-training's own


def test_resume_rule_comes_from_the_schema(tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", str(tmp_path), "--model-arg", "depth=3"], capsys)
    assert code == 2 and err.startswith("error: --model-arg: cannot change a run's config with --resume")


class _Counting(TrainPlugin):
    made = 0

    def __init__(self):
        type(self).made += 1
        self.seen = []  # state of one run

    def applies(self, cfg):
        return True

    def prepare_data(self, source, cfg):
        self.seen.append(cfg.seed)
        return source


def test_each_run_gets_fresh_techniques(monkeypatch):
    from kcv.data.pipeline import load_data
    from kcv.train import distribute

    monkeypatch.setattr(loop, "PLUGINS", [TransferPlugin, DistillPlugin, _Counting])
    spec = get_spec("lenet5")
    source = load_data("shapes:8", spec.task, 32)
    strategy = distribute.select("none")
    jobs = []
    for seed in (1, 2):
        cfg = TrainConfig(arch="lenet5", pretrained="w.keras", teacher="RUN", seed=seed, augment="none",
                          img_size=32, epochs=1, batch_size=4)
        jobs.append(loop._Job(cfg, spec, source, strategy))
    first, second = (job.plugins for job in jobs)
    assert [type(p) for p in first] == [TransferPlugin, DistillPlugin, _Counting]
    assert all(a is not b for a, b in zip(first, second))
    assert first[-1].seen == [1] and second[-1].seen == [2]


def test_plugins_are_registered_as_classes():
    assert all(isinstance(p, type) and issubclass(p, TrainPlugin) for p in loop.PLUGINS)
    with pytest.raises(TypeError, match="class"):
        loop.register_plugin(TransferPlugin())
