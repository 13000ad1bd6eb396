"""keras.applications' ImageNet weight files: where they live, fetching, hashes, import.

The files are keras.applications' own (same names, same published MD5 hashes, same
download URLs) in Keras's own cache, ``$KERAS_HOME/models`` (default ``~/.keras/models``),
so a file Keras downloaded serves kcv and the other way round. A missing file is fetched
by Keras's own ``keras.utils.get_file``; offline, the error names the file, the directory
and ``kcv weights import FILE`` (copy a file fetched elsewhere into the cache). A cached
file whose hash differs from the published one is used, with a one-line warning: people
copy files between machines, and a re-saved file is still the same weights.

``KCV_OFFLINE=1`` skips the download attempt (air-gapped machines, and the tests, which
never touch the network).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kcv.errors import KcvError

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
EFFICIENTNET_BASE = "https://storage.googleapis.com/keras-applications/"
OFFLINE_ENV = "KCV_OFFLINE"


@dataclass(frozen=True)
class WeightFile:
    """One keras.applications weight file."""

    name: str  # the file name keras.applications downloads and caches
    origin: str  # its URL
    md5: str | None  # the published hash (None: keras.applications publishes none)
    arch: str  # the kcv model it belongs to
    top: bool  # holds the 1000-class classifier too


def keras_home() -> Path:
    """Keras's cache root: ``$KERAS_HOME`` or ``~/.keras``, read now (Keras reads it once at
    import, so tests that set it later still get their own directory)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def cache_dir() -> Path:
    """Where keras.applications keeps its weight files (``cache_subdir="models"``)."""
    return keras_home() / "models"


def md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_status(file: WeightFile, path) -> str:
    """``ok``, ``differs`` or ``unpublished`` (keras.applications gives no hash)."""
    if file.md5 is None:
        return "unpublished"
    return "ok" if md5(path) == file.md5 else "differs"


def locate(file: WeightFile, log=None) -> Path:
    """The cached path of ``file``, downloaded by Keras if missing and online.

    Raises:
        KcvError: missing and the download failed (or ``KCV_OFFLINE=1``).
    """
    path = cache_dir() / file.name
    if path.is_file():
        if hash_status(file, path) == "differs":
            print(f"warning: {path}: MD5 differs from keras.applications' published {file.md5}; "
                  "using it anyway", file=log or sys.stderr, flush=True)
        return path
    if not os.environ.get(OFFLINE_ENV):
        try:
            return Path(_download(file))
        except Exception:  # no network, proxy, HTTP error: the one-line message below
            pass
    raise KcvError(f"ImageNet weights for {file.arch}: {file.name} is not in {cache_dir()} and could "
                   f"not be downloaded; fetch it where there is a network ({file.origin}) and run "
                   f"`kcv weights import {file.name}`")


def _download(file: WeightFile) -> str:
    import keras

    # Keras's own download code (progress bar, hash check, partial file removed on failure).
    return keras.utils.get_file(file.name, file.origin, cache_subdir="models",
                                cache_dir=str(keras_home()), file_hash=file.md5)


def import_file(source, known) -> tuple[Path, WeightFile, str]:
    """Copy a weight file into the cache under keras.applications' name.

    ``source`` is recognised by its file name or, renamed, by its MD5 among the published
    hashes (``known``: every :class:`WeightFile`). Returns ``(cached path, file, hash status)``.
    """
    src = Path(source)
    if not src.is_file():
        raise KcvError(f"{source}: no such file")
    by_name = {f.name: f for f in known}
    file = by_name.get(src.name)
    if file is None:
        digest = md5(src)
        file = next((f for f in known if f.md5 == digest), None)
        if file is None:
            raise KcvError(f"{source}: neither the name nor the MD5 of a keras.applications ImageNet "
                           "weight file (`kcv weights list` shows them)")
    read_layers(src)  # refuse what is not a Keras .h5 weights file before copying it
    dest = cache_dir() / file.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != dest.resolve():
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)  # atomic: never a half-copied file under the real name
    return dest, file, hash_status(file, dest)


def read_layers(path) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays]}`` of a Keras 2 ``.h5`` weights file, in the file's layer order
    (the order Keras itself loads them in), layers without weights left out."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            found = {}
            for raw in group.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in group[name].attrs["weight_names"]]
                if names:
                    found[name] = [np.asarray(group[name][n]) for n in names]
            return found
    except Exception as e:  # not HDF5, truncated, not a Keras 2 weights file
        raise KcvError(f"{path}: not a readable keras.applications weights file "
                       f"({type(e).__name__}: {e})") from None
