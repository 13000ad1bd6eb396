"""The non-gradient "fit" of the k-NN baseline (``kcv train --arch knn [--backbone RUN]``).

One pass over the training split computes each image's feature vector (raw pixels, or the
penultimate features of a trained kcv classifier) and stores them with their labels as the
non-trainable reference set of :class:`kcv.models.classification.knn.NearestNeighbors`.
The run directory is the same as any run's (docs/design.md §4): ``config.json``, ``model.keras``
(= ``last.keras``), a one-row ``history.csv``, ``metrics.json`` and ``curves.png``, so
``kcv export`` and ``kcv eval`` treat it like any other model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np

from kcv import losses, metrics, runs
from kcv.errors import KcvError
from kcv.models.classification.knn import NearestNeighbors, build_knn
from kcv.registry import get_spec
from kcv import options
from kcv.train.callbacks import finalize, rows_to_csv, versions
from kcv.contracts import CONFIG_FILE, HISTORY_FILE, LAST_FILE, LOGITS_LAYER, METRICS_FILE, MODEL_FILE


def backbone_features(run) -> tuple[keras.Model, dict]:
    """``(image → penultimate features model, backbone config)`` of a trained classifier run.

    The penultimate features are the input of the layer named ``logits`` (the main head of
    every kcv classifier, docs/design.md §6); the returned model keeps the backbone's layer names.
    """
    model, cfg = runs.load_run(run)
    if cfg.get("task") != "classification":
        raise KcvError(f"--backbone {run}: a {cfg.get('task')} run; k-NN needs a classifier's features")
    try:
        head = model.get_layer(LOGITS_LAYER)
    except ValueError:
        raise KcvError(f"--backbone {run}: its model has no {LOGITS_LAYER!r} layer") from None
    if isinstance(head, NearestNeighbors):
        raise KcvError(f"--backbone {run}: a k-NN run has no learned features; train a classifier first")
    features = keras.Model(model.inputs[0], head.input, name=f"{cfg['arch']}_features")
    features.trainable = False
    return features, cfg


def _with_backbone_size(config, backbone_cfg):
    """The backbone fixes the input size: default to it, refuse a different ``--img-size``."""
    size = int(backbone_cfg["img_size"])
    if config.img_size is not None and int(config.img_size) != size:
        raise KcvError(f"--img-size {config.img_size}: backbone {config.backbone} was trained at "
                       f"{size} px; leave --img-size out or pass {size}")
    return dataclasses.replace(config, img_size=size)


def _check_model_args(cfg, spec, num_train: int):
    unknown = sorted(set(cfg.model_args) - set(spec.hyperparameters) - {"reference_size"})
    if unknown or "reference_size" in cfg.model_args:
        bad = unknown or ["reference_size"]
        raise KcvError(f"--model-arg {', '.join(bad)}: knn takes k, metric, weighting "
                       f"(the reference set is the training split)")
    k = cfg.model_args.get("k", spec.hyperparameters["k"])
    if not isinstance(k, int) or not 1 <= k <= num_train:
        raise KcvError(f"--model-arg k={k}: must be an integer between 1 and the "
                       f"{num_train} training images")


def extract(feature_model: keras.Model, dataset):
    """``(features [N, D], labels [N])`` of a batched ``(image, label)`` dataset."""
    feats, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        f = np.asarray(feature_model(x, training=False))
        feats.append(f.reshape(len(f), -1))
        labels.append(y)
    return np.concatenate(feats), np.concatenate(labels)


def fit_knn(config) -> Path:
    """Build the reference set of ``config`` (a ``TrainConfig``) and write its run directory."""
    from kcv.data.pipeline import load_data

    spec = get_spec(config.arch)
    if not spec.capabilities.references:
        raise KcvError(f"--arch {config.arch}: {spec.name} is {spec.capabilities.describe()}, "
                       "not fitted from a reference set")
    options.refuse_unsupported(config, spec)  # before the backbone run is read
    features, backbone_cfg = (None, None)
    if config.backbone is not None:
        features, backbone_cfg = backbone_features(config.backbone)
        config = _with_backbone_size(config, backbone_cfg)
    cfg = config.resolved()
    keras.utils.set_random_seed(cfg.seed)
    source = load_data(cfg.data, spec.task, cfg.img_size, seed=cfg.seed, val_split=cfg.val_split)
    _check_model_args(cfg, spec, source.num_train)
    shape = (cfg.img_size, cfg.img_size, 3)
    model = build_knn(source.num_classes, shape, reference_size=source.num_train,
                      features=features, **cfg.model_args)
    neighbours = model.get_layer(LOGITS_LAYER)

    run_dir = runs.new_run_dir(cfg.out, cfg.name or cfg.arch)
    record = {**dataclasses.asdict(cfg), "task": spec.task, "num_classes": source.num_classes,
              "class_names": source.class_names, "num_train": source.num_train,
              "num_val": source.num_val, "params": int(model.count_params()),
              "backbone_arch": backbone_cfg["arch"] if backbone_cfg else None,
              "versions": versions()}
    record.pop("verbose")
    runs.write_json(run_dir / CONFIG_FILE, record)
    if cfg.verbose:
        kind = f"{backbone_cfg['arch']} features" if backbone_cfg else "raw pixels"
        print(f"k-NN on {kind}: storing {source.num_train} training images of {source.spec} at "
              f"{cfg.img_size} px as the reference set -> {run_dir}", flush=True)

    t0 = time.perf_counter()
    feature_model = keras.Model(model.inputs[0], neighbours.input)
    refs, labels = extract(feature_model, source.dataset("train", cfg.batch_size))
    neighbours.set_reference(refs, labels)
    seconds = time.perf_counter() - t0
    model.compile(loss=losses.get_loss("ce", spec.task),
                  metrics=metrics.training_metrics(spec.task, source.num_classes), jit_compile=False)
    scores = model.evaluate(source.dataset("val", cfg.batch_size), verbose=0, return_dict=True)
    row = {"epoch": 1, **{f"val_{k}": float(v) for k, v in scores.items()},
           "images_per_sec": round(source.num_train / max(seconds, 1e-9), 2)}
    runs.write_text(run_dir / HISTORY_FILE, rows_to_csv([row]))
    runs.save_model(model, run_dir / LAST_FILE)
    runs.save_model(model, run_dir / MODEL_FILE)
    final = finalize(run_dir, source, cfg.batch_size, [row], spec.task, cfg.arch)
    final["train_seconds"] = round(time.perf_counter() - t0, 1)
    runs.write_json(run_dir / METRICS_FILE, final)
    return run_dir
