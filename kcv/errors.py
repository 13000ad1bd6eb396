"""User-facing errors.

A :class:`KcvError` is a mistake the user can fix (a bad flag, a missing file, bad data).
The CLI prints it as a single ``error: ...`` line on stderr and exits with code 2; any
other exception is a bug and keeps its traceback.
"""


class KcvError(Exception):
    """An error caused by user input; its message is one line that names the culprit."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep the message on one line whatever the caller passed: the CLI contract is
        # one line on stderr.
        super().__init__(" ".join(str(message).split()))


def warn(message: str) -> None:
    """Print one ``warning: ...`` line on stderr: the run goes on, but the user should know."""
    import sys

    print("warning: " + " ".join(str(message).split()), file=sys.stderr, flush=True)
