"""The ``kcv`` command line: a thin click shell over the library (docs/design.md §3).

Each command lives in its own module and calls one library function. A
:class:`~kcv.errors.KcvError` or a usage mistake prints one ``error: ...`` line on stderr
and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys

import click

from kcv import __version__
from kcv.errors import KcvError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="kcv")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug):
    """kcv — train classic CNNs on images and ship them as verified TFLite/ONNX files.

    \b
    Quick start:
      kcv train --arch unet      # trains on the built-in shapes data
      kcv export --tflite        # verified saved_models/unet/exports/model_fp32.tflite
    """


def _register_commands():
    """Every ``kcv/cli/*_cmd.py`` module contributes its ``command``."""
    import importlib
    import pkgutil

    import kcv.cli as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith("_cmd"):
            cli.add_command(_finite_floats(importlib.import_module(f"kcv.cli.{info.name}").command))


class FiniteFloat(click.types.FloatParamType):
    """click's float, without ``nan`` and ``inf``: no kcv option means either, and they
    pass every ``x > 0`` / ``x < limit`` check written for numbers (``--lr inf``)."""

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _finite_floats(command):
    """Every float option of ``command`` as :class:`FiniteFloat` (one place for all commands)."""
    for param in command.params:
        if type(param.type) is click.types.FloatParamType:
            param.type = FiniteFloat()
    return command


_register_commands()

# Conditions of the machine, not bugs: one line naming the file, like any KcvError.
DISK_ERRNOS = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded",
               "EROFS": "read-only file system", "EACCES": "permission denied"}


# Commands that load Keras only when their model is a run or a .keras file; on .tflite and
# .onnx files they run without TensorFlow (kcv_entry, docs/deploy.md).
KERAS_FREE = ("predict", "benchmark")


def _load_keras_for(argv) -> None:
    """Register kcv's Keras objects unless the command is one of :data:`KERAS_FREE`."""
    import kcv

    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None or command in KERAS_FREE or command not in cli.commands:
        return
    kcv.load_keras(f"kcv {command}")


def main(argv=None):
    """Console entry point: runs the click group and turns errors into one line + exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        _load_keras_for(argv)
        rc = cli.main(args=argv, prog_name="kcv", standalone_mode=False)
    except KcvError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        import errno

        reason = DISK_ERRNOS.get(errno.errorcode.get(e.errno, ""))
        if debug or reason is None:
            raise
        click.echo(f"error: {e.filename or 'writing'}: {reason}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        if debug:
            raise
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        sys.exit(2)
    sys.exit(rc or 0)
