"""Shared check of a classifier's feature-tap contract (``kcv/models/backbone.py``)."""

from __future__ import annotations

import numpy as np

from kcv.models.backbone import build_encoder, feature_taps


def check_taps(name: str, size: int = 64, slack: int = 1, **hyperparameters):
    """Build ``name``'s encoder for ``(None, None, 3)``, run it at ``size`` px and check that
    each tap's side is ``size / stride`` (± ``slack`` for 'valid'-padded families).

    Returns ``{stride: feature array}``.
    """
    taps = feature_taps(name)
    strides = sorted(taps)
    encoder = build_encoder(name, (None, None, 3), strides=strides, **hyperparameters)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    feats = encoder(x, training=False)
    out = {}
    for stride, f in zip(strides, feats):
        f = np.asarray(f)
        assert abs(f.shape[1] - size / stride) <= slack, (name, stride, f.shape)
        assert abs(f.shape[2] - size / stride) <= slack, (name, stride, f.shape)
        assert np.all(np.isfinite(f))
        out[stride] = f
    return out


def trainable_count(model) -> int:
    """Trainable parameters (torchvision's convention: no BN moving statistics)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
