"""``--distribute``: pick a ``tf.distribute`` strategy, and make Keras 3 ``fit`` work under it.

- ``none``: the default strategy (one device).
- ``mirrored``: ``MirroredStrategy`` over all local GPUs (synchronous data parallelism).
- ``multiworker``: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``: run the same command
  on every node; each worker reads its shard of every global batch; only the chief
  (``task.type == "chief"``, or worker 0 when there is no chief) writes the run directory.
- ``auto``: ``multiworker`` when ``TF_CONFIG`` names more than one task, ``mirrored`` with
  more than one GPU, else ``none``.

``--batch-size`` is the global batch size in every mode.

Keras 3.15 ``fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
tensorflow/tensorflow#72388) in two places; :func:`prepare_model` works around both for
the one model kcv fits, and nothing changes for the other strategies.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from kcv import compat, contracts
from kcv.errors import KcvError

MODES = contracts.DISTRIBUTE_MODES


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise KcvError(f"TF_CONFIG: not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or "cluster" not in cfg or "task" not in cfg:
        raise KcvError("TF_CONFIG: expected {\"cluster\": {...}, \"task\": {\"type\": ..., \"index\": ...}}")
    return cfg


def _cluster_size(cfg: dict) -> int:
    return sum(len(v) for k, v in cfg.get("cluster", {}).items() if k in ("chief", "worker"))


def select(mode: str):
    """The strategy for ``--distribute mode`` (see the module docstring)."""
    if mode not in MODES:
        raise KcvError(f"--distribute '{mode}': choose one of {', '.join(MODES)}")
    cfg = _tf_config()
    if mode == "auto":
        if _cluster_size(cfg) > 1:
            mode = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            mode = "mirrored"
        else:
            mode = "none"
    if mode == "none":
        return tf.distribute.get_strategy()
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy()
    if not cfg:
        raise KcvError("--distribute multiworker: set TF_CONFIG on every worker "
                       "(cluster addresses and this worker's task type and index)")
    compat.patch_reduce_per_replica()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_multiworker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy) -> bool:
    """True on the process that writes the run directory."""
    if not is_multiworker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def worker_label(strategy) -> str:
    if not is_multiworker(strategy):
        return "local"
    r = strategy.cluster_resolver
    return f"{r.task_type} {r.task_id}"


def shard_of(strategy) -> tuple[int, int]:
    """``(this worker's index, number of workers)``."""
    r = strategy.cluster_resolver
    workers = sum(len(v) for k, v in r.cluster_spec().as_dict().items() if k in ("chief", "worker"))
    index = r.task_id + (1 if r.task_type == "worker" and "chief" in r.cluster_spec().as_dict() else 0)
    return index, workers


def per_worker(strategy, stream):
    """The training stream, each worker reading only its own files.

    ``stream(shard=(worker, workers), local_replicas=R)`` yields this worker's per-replica
    batches (R per step): its slice
    of every global batch, decoded here and nowhere else. tf.data's auto-sharding cannot do
    this: ``AutoShardPolicy.FILE`` only finds files behind reader datasets (TFRecord, text
    lines), not a list of image paths, and ``DATA`` makes every worker decode every image
    and keep 1/N of them. The global batches are those of a one-worker run.
    """
    def fn(ctx: tf.distribute.InputContext):
        return stream(shard=(ctx.input_pipeline_id, ctx.num_input_pipelines),
                      local_replicas=ctx.num_replicas_in_sync // ctx.num_input_pipelines)

    return strategy.distribute_datasets_from_function(fn)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by elements (validation batches: every worker scores its part)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def prepare_model(model, strategy, element_spec) -> None:
    """Build the compiled model's metrics and optimizer before ``fit`` under multi-worker.

    Keras' ``_maybe_symbolic_build`` reduces a whole ``(x, y)`` batch across workers in
    eager mode, which ``CollectiveAllReduceStrategy.reduce`` rejects. Building
    symbolically from the dataset's element spec needs no data, so the step is skipped.
    """
    if not is_multiworker(strategy):
        return
    with strategy.scope():
        compat.build_for_fit(model, element_spec)
