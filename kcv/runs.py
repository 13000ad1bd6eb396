"""Run directories, the :class:`Run` object that reads one, and atomic writes (docs/design.md §4).

A run lives in ``saved_models/<name>/``; names default to the architecture and are never
reused (``unet``, ``unet-2``, ...). Every file is written under a temporary name in the
same directory and renamed into place, so a killed process leaves the previous good file
or none, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

from kcv import contracts
from kcv.errors import KcvError

DEFAULT_ROOT = Path("saved_models")


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps ``path``'s suffix (Keras insists on ``.keras``), and is
    removed if the body raises.
    """
    path = Path(path)
    ensure_dir(path.parent)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.stem), suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as Keras want to create the file themselves
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            if os.path.isdir(tmp):
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.unlink(tmp)


def temp_prefix(stem: str) -> str:
    """Prefix of a temporary name beside a file: hidden, and carrying the writer's process id,
    so that :func:`remove_stale_temps` can tell a dead writer's leftovers from a live one's."""
    return f".{stem}.tmp-{os.getpid()}-"


_TEMP_PID = re.compile(r"^\..*\.tmp-(\d+)-")


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temporary files and folders a killed writer left in ``folder``.

    Only those whose process is gone: a concurrent writer's are in use. Returns the paths removed.
    """
    import shutil

    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_PID.match(p.name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def ensure_dir(path, flag: str | None = None) -> Path:
    """Create folder ``path`` (and parents), or raise one line naming it and ``flag``."""
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if path.exists() and not path.is_dir():
        raise KcvError(f"{where}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise KcvError(f"{where}: a file is in the way of this folder") from None
    except OSError as e:
        raise KcvError(f"{where}: cannot create the folder ({e.strerror})") from None
    return path


class NewRunGuard:
    """Removes the new run directories made inside the block if it fails before they hold
    a trained epoch.

    A run that fails before its first epoch is saved (bad data, a diverged first epoch, a
    full disk, Ctrl-C) would otherwise leave a directory with only ``config.json`` that
    takes the name. :func:`new_run_dir` reports each directory it makes to the innermost
    active guard, so a caller only wraps its work (``with NewRunGuard(): ...``). "Trained"
    means a ``last.keras`` anywhere in it (self-training keeps its rounds in sub-folders);
    resumed runs are not made here, so never removed.
    """

    active: list = []  # innermost last

    def __init__(self):
        self.dirs: list[Path] = []

    def __enter__(self):
        NewRunGuard.active.append(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        import shutil

        NewRunGuard.active.remove(self)
        for d in self.dirs:
            if exc_type is not None and d.is_dir() and not has_trained_epoch(d):
                shutil.rmtree(d, ignore_errors=True)
            else:
                _writer_mark(d).unlink(missing_ok=True)  # the writer is done with it
        return False


def write_text(path, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, obj) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def save_model(model, path) -> Path:
    """Atomically save a Keras model to ``path`` (``.keras``)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def read_json(path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise KcvError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KcvError(f"{path}: not valid JSON ({e})") from None


def new_run_dir(root, name: str) -> Path:
    """Create and return a fresh run directory ``root/name`` (``name-2``... if taken).

    A directory of that name that a killed run left without a trained epoch is taken over
    (see :func:`abandoned`): ``kill -9`` cannot be cleaned up after, so the next run of the
    name does it. The directory holds a writer mark (``.writer.tmp-PID-``, the pid scheme of
    :func:`temp_prefix`) until its run ends.
    """
    root = Path(root)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise KcvError(f"--name '{name}': use letters, digits, '.', '_' and '-' only")
    ensure_dir(root, "--out")
    candidate, i = root / name, 1
    while True:
        try:
            candidate.mkdir()  # atomic: two concurrent runs never share a directory
        except FileExistsError:
            if not _take_over(candidate):
                i += 1
                candidate = root / f"{name}-{i}"
            continue
        _writer_mark(candidate).touch()
        if NewRunGuard.active:
            NewRunGuard.active[-1].dirs.append(candidate)
        return candidate


def has_trained_epoch(path) -> bool:
    """Whether a run directory holds a saved epoch (a ``last.keras`` anywhere in it:
    self-training keeps its rounds in sub-folders)."""
    return any(Path(path).rglob(contracts.LAST_FILE))


_WRITER = "writer"
LEGACY_GRACE_S = 600  # a run directory made before writer marks, untouched this long, is dead


def _writer_mark(run_dir: Path) -> Path:
    return Path(run_dir) / f"{temp_prefix(_WRITER)}"


def abandoned(path) -> bool:
    """A run directory left by a run killed before its first epoch was saved: no trained
    epoch, and its writer is gone. The writer is known by its mark (a dead pid); a directory
    without one (made before marks existed) counts when it holds only what a run writes
    before its first epoch and has been untouched for ``LEGACY_GRACE_S``."""
    import time

    path = Path(path)
    if not path.is_dir() or path.is_symlink() or has_trained_epoch(path):
        return False
    marks = [m for p in path.iterdir() if p.name.startswith(f".{_WRITER}.") and (m := _TEMP_PID.match(p.name))]
    if marks:
        return not any(int(m.group(1)) == os.getpid() or _alive(int(m.group(1))) for m in marks)
    names = {p.name for p in path.iterdir()}
    return (contracts.CONFIG_FILE in names and names <= {contracts.CONFIG_FILE, "cache", "tensorboard"}
            and time.time() - path.stat().st_mtime > LEGACY_GRACE_S)


def _take_over(path: Path) -> bool:
    """Remove ``path`` if :func:`abandoned`, so the name can be made afresh; ``True`` when
    the name is free again (removed here or by a concurrent run). The directory is first
    renamed to a temporary name: of two runs racing for it, one wins the rename."""
    import shutil

    if not abandoned(path):
        return False
    grave = path.parent / f"{temp_prefix(path.name)}abandoned"
    try:
        os.rename(path, grave)
    except FileNotFoundError:  # a concurrent run took it over first
        return True
    except OSError:
        return False
    shutil.rmtree(grave, ignore_errors=True)
    return True


def is_run_dir(path) -> bool:
    path = Path(path)
    return (path / contracts.CONFIG_FILE).is_file() and (path / contracts.MODEL_FILE).is_file()


def latest_run(root=DEFAULT_ROOT) -> Path:
    """The most recently modified complete run under ``root``: one with a saved model (a
    run killed before its first epoch, holding only ``config.json``, is skipped)."""
    root = Path(root)
    runs = [p for p in root.glob("*") if p.is_dir() and is_run_dir(p)] if root.is_dir() else []
    if not runs:
        raise KcvError(f"no trained run under {root}/: train one with `kcv train --arch ARCH`")
    return max(runs, key=lambda p: (p / contracts.MODEL_FILE).stat().st_mtime)


def resolve_run(run=None, root=DEFAULT_ROOT) -> Path:
    """``run`` as a run directory; ``None`` means the newest under ``root``."""
    if run is None:
        return latest_run(root)
    path = Path(run)
    if not path.exists() and (Path(root) / str(run)).exists():
        path = Path(root) / str(run)
    if not path.is_dir():
        raise KcvError(f"{run}: no such run directory")
    if (path / contracts.CONFIG_FILE).is_file() and not (path / contracts.MODEL_FILE).is_file() \
            and not has_trained_epoch(path):
        raise KcvError(f"{path}: nothing was trained in this run (it stopped before its first epoch was "
                       "saved); start a new run")
    for f in (contracts.CONFIG_FILE, contracts.MODEL_FILE):
        if not (path / f).is_file():
            raise KcvError(f"{path}: not a kcv run directory (no {f})")
    return path


# What every reader of a run takes from config.json (predict, export, eval, explain, resume).
CONFIG_REQUIRED = {"arch": str, "task": str, "img_size": int, "class_names": list}


def load_config(run) -> dict:
    """The ``config.json`` of a run directory, checked to hold what every reader needs."""
    path = Path(run) / contracts.CONFIG_FILE
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise KcvError(f"{path}: damaged run config (a JSON {type(cfg).__name__}, not an object)")
    for key, kind in CONFIG_REQUIRED.items():
        value = cfg.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            got = "missing" if key not in cfg else f"{type(value).__name__} {value!r}"[:60]
            raise KcvError(f"{path}: damaged run config ('{key}' is {got}, expected {kind.__name__})")
    return cfg


class Run:
    """A finished (or resumable) run directory, read through one object.

    ``config.json`` is read once; the model, the data source and the metrics are loaded on
    demand. Every reader of a run (export, benchmark, eval, predict, explain, compare) goes
    through this instead of re-reading files and re-resolving ``--data`` on its own.

    Args:
        path: the run directory (use :func:`open_run` for a name or the newest run). A path
            that is not a run directory raises a one-line :class:`KcvError` naming it.
    """

    def __init__(self, path):
        self.path = resolve_run(Path(path))
        self._config = None
        self._sources = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def config(self) -> dict:
        """``config.json``: every training option plus task, classes and versions."""
        if self._config is None:
            self._config = load_config(self.path)
        return self._config

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def arch(self) -> str:
        return self.config.get("arch", "?")

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @property
    def class_names(self) -> list:
        return list(self.config["class_names"])

    @property
    def img_size(self) -> int:
        return int(self.config["img_size"])

    @property
    def metrics(self) -> dict:
        """``metrics.json``: the best epoch's validation scores (written when training ends)."""
        path = self.path / contracts.METRICS_FILE
        if not path.is_file():
            raise KcvError(f"{self.path}: no {contracts.METRICS_FILE}; the run did not finish training")
        return read_json(path)

    @property
    def exports(self) -> Path:
        """The ``exports/`` folder (it may not exist yet)."""
        return self.path / contracts.EXPORTS_DIR

    @property
    def report(self) -> dict:
        """``exports/report.json`` (``{}`` before the first export), read afresh each time:
        export and benchmark rewrite it."""
        path = self.exports / contracts.REPORT_FILE
        return read_json(path) if path.is_file() else {}

    def model(self, best: bool = True):
        """The Keras training model: ``model.keras`` (the best epoch), or ``last.keras``
        with ``best=False``. Logits out; see :func:`kcv.models.inference_model`."""
        import keras

        import kcv.models  # noqa: F401  (registers the custom layers for deserialisation)

        file = self.path / (contracts.MODEL_FILE if best else contracts.LAST_FILE)
        try:
            return keras.saving.load_model(file, compile=False)
        except Exception as e:  # a corrupt or foreign file: say which one
            raise KcvError(f"{file}: cannot load model ({type(e).__name__}: {e})") from None

    def data_source(self, data: str | None = None, whole_images: bool = False, own_size: bool = False):
        """The :class:`~kcv.data.pipeline.DataSource` of the run's ``--data`` (or of ``data``),
        at the run's task, image size, seed and validation split; resolved once per ``data``.
        Data with another number of classes than the run's is refused. ``whole_images``: a
        ``--crop`` run's images at their own size (scoring), not resized to ``img_size``;
        ``own_size``: every run's (``kcv eval --long-side``)."""
        from kcv.data.crop import parse_crop
        from kcv.data.pipeline import load_data

        name = data or self.config.get("data", "shapes")
        key = (name, whole_images, own_size)
        if key not in self._sources:
            cfg = self.config
            crop = parse_crop(cfg.get("crop"), cfg.get("scale")) if whole_images else None
            source = load_data(name, self.task, self.img_size, seed=int(cfg.get("seed", 0)),
                               val_split=float(cfg.get("val_split", 0.2)), crop=crop, own_size=own_size)
            if source.num_classes != self.num_classes:
                raise KcvError(f"--data {name}: {source.num_classes} classes ({', '.join(source.class_names)}), "
                               f"but the run was trained on {self.num_classes} ({', '.join(self.class_names)})")
            self._sources[key] = source
        return self._sources[key]


def open_run(run=None, root=DEFAULT_ROOT) -> Run:
    """The :class:`Run` of a run directory, a run name under ``root``, or (``None``) the
    newest run under ``root``."""
    return Run(resolve_run(run, root))


def load_run(run=None, root=DEFAULT_ROOT, best: bool = True):
    """Load a run's model (``model.keras``, or ``last.keras`` with ``best=False``) and config.

    Returns:
        ``(model, config)``.
    """
    found = open_run(run, root)
    return found.model(best), found.config
