"""``kcv weights [list | verify | import FILE]``: keras.applications' ImageNet weight files in
Keras's cache (``$KERAS_HOME/models``, default ``~/.keras/models``)."""

from __future__ import annotations

import click


@click.group("weights")
def command():
    """ImageNet weight files for `--pretrained imagenet` / `weights="imagenet"`.

    \b
    Examples:
      kcv weights list                 # every file, cached or not
      kcv weights verify               # MD5 of the cached files against keras.applications'
      kcv weights import ~/Downloads/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
    """


def _files(cached_only: bool):
    from kcv import weights
    from kcv.models import imagenet

    files = imagenet.all_files()
    if cached_only:
        return [f for f in files if (weights.cache_dir() / f.name).is_file()]
    # MobileNetV2 has 60 files (6 widths x 5 sizes x top/notop): list the default width and
    # size, plus any other that is cached.
    return [f for f in files if f.arch != "mobilenet_v2" or "_1.0_224" in f.name
            or (weights.cache_dir() / f.name).is_file()]


@command.command("list")
def list_cmd():
    """Every keras.applications ImageNet file kcv uses, and whether it is cached."""
    from kcv import weights

    click.echo(f"cache: {weights.cache_dir()}")
    click.echo(f"{'model':<16} {'file':<64} {'cached':>10}")
    for f in _files(cached_only=False):
        path = weights.cache_dir() / f.name
        size = f"{path.stat().st_size / 2**20:.0f} MB" if path.is_file() else "-"
        click.echo(f"{f.arch:<16} {f.name:<64} {size:>10}")


@command.command("verify")
def verify_cmd():
    """MD5 of every cached file against the hash keras.applications publishes."""
    from kcv import weights

    files = _files(cached_only=True)
    if not files:
        click.echo(f"no ImageNet weight files in {weights.cache_dir()}")
        return
    for f in files:
        status = weights.hash_status(f, weights.cache_dir() / f.name)
        click.echo(f"{f.name:<64} {status}")


@command.command("import")
@click.argument("file")
def import_cmd(file):
    """Copy FILE (fetched on another machine) into the cache under keras.applications' name;
    a renamed file is recognised by its MD5."""
    from kcv import weights
    from kcv.models import imagenet

    dest, found, status = weights.import_file(file, imagenet.all_files())
    note = {"ok": "MD5 ok", "differs": "MD5 differs from the published one; it will be used, with a "
                                       "warning", "unpublished": "keras.applications publishes no hash"}[status]
    click.echo(f"imported {found.arch} weights: {dest} ({note})")
