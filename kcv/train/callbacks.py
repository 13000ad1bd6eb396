"""Callbacks that maintain the run directory during ``fit`` (docs/design.md §4), and resume state.

``last.keras`` is a normal Keras archive (weights + optimizer state) with one extra entry,
``kcv_state.json``: completed epochs, the best monitored value and its epoch, the history
rows, and the RNG state. Everything a resumed run needs therefore lives in the one file
that is renamed into place atomically, so the checkpoint and its bookkeeping can never
disagree, whatever moment the process is killed at.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import platform
import time
import zipfile
from pathlib import Path

import keras

from kcv import compat, metrics, runs
from kcv.errors import KcvError
from kcv.contracts import CURVES_FILE, HISTORY_FILE, LAST_FILE, MODEL_FILE

STATE_ENTRY = "kcv_state.json"


def save_with_state(model, path, state: dict) -> Path:
    """Atomically save ``model`` to ``path`` with ``state`` embedded as ``kcv_state.json``."""
    with runs.atomic_path(path) as tmp:
        _write_with_state(model, tmp, state)
    return Path(path)


def _write_with_state(model, tmp: Path, state: dict) -> None:
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as zf:  # Keras ignores entries it does not know
        zf.writestr(STATE_ENTRY, json.dumps(state, default=runs._json_default))


def save_epoch(files: list, run_dir: Path, epoch: int) -> None:
    """Write ``[(model, path, state), ...]`` of one epoch all or nothing, renamed in list order.

    Every file is first written under its temporary name, and only once all are complete
    are they renamed into place (renaming needs no space). A full disk therefore leaves the
    previous epoch's files untouched, and the run resumable from it.

    Raises:
        KcvError: the disk is full (or another write error), naming the file and what the
            run still holds.
    """
    try:
        with contextlib.ExitStack() as stack:  # renames on exit, last entered first
            for model, path, state in reversed(files):
                _write_with_state(model, stack.enter_context(runs.atomic_path(path)), state)
    except OSError as e:
        kept = (f"{run_dir} still holds epoch {epoch - 1}; free space and continue with "
                f"`kcv train --resume {run_dir}`" if epoch > 1 else "no epoch was saved")
        raise KcvError(f"{e.filename or run_dir}: cannot save epoch {epoch} ({e.strerror or e}); "
                       f"{kept}") from e


class DamagedCheckpoint(Exception):
    """A ``last.keras`` that exists but cannot be read (truncated, overwritten, not a zip)."""


def read_state(path) -> dict | None:
    """The ``kcv_state.json`` embedded in a ``.keras`` file; ``None`` if there is no file or
    no state in it (trained before resume support).

    Raises:
        DamagedCheckpoint: the file is there but damaged.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read(STATE_ENTRY))
    except (FileNotFoundError, KeyError):
        return None
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
        raise DamagedCheckpoint(f"{type(e).__name__}: {e}") from None


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` rebuilt with a float32 dtype policy and the same weights.

    Mixed-precision training keeps float32 master weights; the saved best model is float32
    so that ``kcv export``/``predict`` never see float16 compute.
    """
    if all(layer.dtype_policy.name == "float32" for layer in compat.all_layers(model)):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def float32_outputs(model: keras.Model) -> keras.Model:
    """``model`` with its output layers computing in float32 (mixed precision).

    The logits then reach the loss, the metrics and the inference softmax in float32, as
    the Keras mixed-precision guide recommends for the last layer.
    """
    last = {id(compat.producer(t).layer) for t in model.outputs}

    def clone(layer):
        config = layer.get_config()
        if id(layer) in last:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


class RunWriter(keras.callbacks.Callback):
    """After every epoch: ``model.keras`` if the monitored metric improved, ``last.keras``
    with the resume state, ``history.csv``; and early stopping after ``patience`` epochs
    without improvement.

    Every write is atomic. Training images/sec is measured from the first to the last
    training batch of each epoch, so validation time does not dilute it.

    Args:
        run_dir: the run directory (a scratch folder on non-chief workers).
        num_train: training images per epoch (for images/sec).
        monitor: validation metric to maximise for ``model.keras``.
        state: the resume state of a resumed run (history, best, best_epoch), else ``None``.
        patience: stop after this many epochs without improvement (``None``: never).
        deployable: maps the fitted model to the one saved as ``model.keras``
            (distillation saves the student); float32 in any case.
        rng: extra RNG bookkeeping stored with the state (the data seed).
    """

    def __init__(self, run_dir, num_train: int, monitor: str, state: dict | None = None,
                 patience: int | None = None, deployable=None, rng: dict | None = None):
        super().__init__()
        state = state or {}
        self.run_dir = Path(run_dir)
        self.num_train = num_train
        self.monitor = monitor
        self.rows = list(state.get("history", []))
        self.best = state.get("best", -math.inf)
        self.best_epoch = state.get("best_epoch", 0)
        self.patience = patience
        self.deployable = deployable or (lambda m: m)
        self.rng = dict(rng or {})
        self.stopped_early = False
        self._t0 = self._t1 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0, self._t1 = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._t0 is not None and self._t1 is None:
            self._t1 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        elapsed = (self._t1 or time.perf_counter()) - self._t0
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in logs.items() if _is_number(v)})
        row["images_per_sec"] = round(self.num_train / max(elapsed, 1e-9), 2)
        self.rows.append(row)
        value = logs.get(self.monitor)
        files = []
        if value is not None and float(value) > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            best = float32_copy(self.deployable(self.model))
            files.append((best, self.run_dir / MODEL_FILE,
                          {"epoch": epoch + 1, "monitor": self.monitor, "value": self.best}))
        # last.keras carries the whole resume state, renamed into place last; history.csv is
        # a readable copy of it, written after, so a kill in between only leaves history.csv
        # one epoch behind.
        files.append((self.model, self.run_dir / LAST_FILE, self.state(epoch + 1)))
        save_epoch(files, self.run_dir, epoch + 1)
        try:
            runs.write_text(self.run_dir / HISTORY_FILE, rows_to_csv(self.rows))
        except OSError as e:  # the epoch itself is saved: resumable from it
            raise KcvError(f"{e.filename or self.run_dir / HISTORY_FILE}: cannot write ({e.strerror or e}); "
                           f"{self.run_dir} holds epoch {epoch + 1}: free space and continue with "
                           f"`kcv train --resume {self.run_dir}`") from e
        if self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True

    def state(self, epochs_done: int) -> dict:
        # Layer RNGs (dropout) are model variables and travel with the weights; the data
        # RNG is (seed, epoch) by construction; what is left is Keras' global generator.
        return {"epoch": epochs_done, "monitor": self.monitor, "best": self.best,
                "best_epoch": self.best_epoch, "history": self.rows,
                "rng": {**self.rng, "next_epoch": epochs_done,
                        "keras_global": compat.global_rng_state()}}


class NanGuard(keras.callbacks.TerminateOnNaN):
    """Stop at the first NaN/Inf loss with a one-line error saying what to do.

    Raising (instead of ``stop_training``) means no callback writes the diverged weights:
    ``last.keras`` and ``model.keras`` keep the last good epoch.
    """

    def __init__(self, hint: str, run_dir=None):
        super().__init__(raise_error=True)
        self.hint = hint
        self.run_dir = run_dir
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # Only a run with a saved epoch has a "last good epoch" to point at.
            kept = f"; {self.run_dir} keeps the last good epoch" if self.run_dir and self.epoch > 0 else ""
            raise KcvError(f"training diverged: loss is {float(loss)} at epoch {self.epoch + 1}, "
                           f"step {batch + 1}; {self.hint}{kept}")


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def rows_to_csv(rows, first=("epoch",)) -> str:
    """CSV text of rows; the header is the union of keys, ``first`` ones first."""
    keys = list(first)
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def read_history(path) -> list[dict]:
    """Rows of a ``history.csv`` as dicts of floats (``epoch`` as int)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open() as f:
        rows = []
        for r in csv.DictReader(f):
            row = {k: float(v) for k, v in r.items() if v not in ("", None)}
            row["epoch"] = int(row["epoch"])
            rows.append(row)
        return rows


def versions() -> dict:
    """The software versions recorded in ``config.json``."""
    import tensorflow as tf

    import kcv

    return {"kcv": kcv.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def finalize(run_dir: Path, source, batch_size: int, rows, task: str, title: str) -> dict:
    """Evaluate the best model on the validation split; write ``curves.png``; return metrics."""
    from kcv.evaluation.evaluate import evaluate_model
    from kcv.viz.curves import plot_curves

    best = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    report, _ = evaluate_model(best, source, batch_size)
    report.pop("per_class", None)
    monitor = metrics.monitor(task)
    scored = [r for r in rows if math.isfinite(r.get(monitor, -math.inf))]
    report["best_epoch"] = int(max(scored, key=lambda r: r[monitor])["epoch"]) if scored else None
    report["epochs"] = len(rows)
    plot_curves(rows, run_dir / CURVES_FILE, title=title)
    return report
