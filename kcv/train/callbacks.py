"""Callbacks that maintain the run directory during ``fit`` (DESIGN §4)."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import keras

from kcv import runs


class RunWriter(keras.callbacks.Callback):
    """Writes ``history.csv``, ``last.keras`` and the best ``model.keras`` after every epoch.

    Every write is atomic. Training images/sec is measured from the first to the last
    training batch of each epoch, so validation time does not dilute it.

    Args:
        run_dir: the run directory.
        num_train: training images per epoch (for images/sec).
        monitor: validation metric to maximise for ``model.keras``.
        history: rows already written (a resumed run), kept in front of the new ones.
        best: best monitored value so far (a resumed run).
    """

    def __init__(self, run_dir, num_train: int, monitor: str, history=None, best=-math.inf):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.num_train = num_train
        self.monitor = monitor
        self.rows = list(history or [])
        self.best = best
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
        runs.write_text(self.run_dir / "history.csv", rows_to_csv(self.rows))
        runs.save_model(self.model, self.run_dir / "last.keras")
        value = logs.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best = float(value)
            runs.save_model(self.model, self.run_dir / runs.MODEL_FILE)


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def rows_to_csv(rows) -> str:
    """CSV text of history rows; the header is the union of keys, ``epoch`` first."""
    keys = ["epoch"]
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
