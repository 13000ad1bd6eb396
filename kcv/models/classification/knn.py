"""k-nearest-neighbour classifier (Cover & Hart, "Nearest Neighbor Pattern Classification",
IEEE Trans. Information Theory 1967) as a Keras model, the course's first baseline.

The model maps an image to a feature vector — its raw pixels (scaled to [-1, 1] and
flattened) or, with ``kcv train --arch knn --backbone RUN``, a trained classifier's
penultimate features — and compares it with a stored reference set: the training images'
features and labels, held as NON-TRAINABLE weights of :class:`NearestNeighbors`. Prediction
is a vote of the ``k`` nearest references (L2 or cosine), uniform or weighted by inverse
distance, computed for a whole batch at once: one distance matrix (a matmul), one
``top_k``, one gather — no Python loop over samples, and every op is a TFLite builtin.

The output is the log of the (lightly smoothed) vote fractions, so the softmax that
:func:`kcv.models.inference_model` appends gives the vote fractions back as probabilities,
and the usual cross-entropy/accuracy metrics apply. "Training" is not gradient descent:
:mod:`kcv.train.knn` fills the reference set in one pass.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from kcv.capabilities import Capabilities
from kcv.errors import KcvError
from kcv.layers import normalized_input
from kcv.registry import register
from kcv.contracts import LOGITS_LAYER

METRICS = ("l2", "cosine")
WEIGHTINGS = ("uniform", "distance")
SMOOTHING = 1e-3  # vote mass given to every class, so log-probabilities stay finite
EPSILON = 1e-6
TIE_REL = 1e-4  # a k-th/(k+1)-th distance gap below this fraction is a tie (neighbour_ties)


@keras.saving.register_keras_serializable(package="kcv")
class NearestNeighbors(keras.layers.Layer):
    """Scores of a k-NN vote against a stored reference set.

    Args:
        num_references: N, rows of the reference set.
        num_classes: C, classes of the labels.
        k: neighbours that vote (≤ N).
        metric: ``"l2"`` (Euclidean) or ``"cosine"``: cosine distance of the features
            centred on the reference set's mean (SimpleShot's CL2N, Wang et al. 2019).
        weighting: ``"uniform"`` (majority vote) or ``"distance"`` (votes ∝ 1 / distance).

    Why centre: ReLU features are all positive, so uncentred they lie within a few degrees
    of each other — MobileNetV2's on ``shapes`` have cosine similarities of 0.996-0.999, the
    k-th and (k+1)-th neighbours 2e-5 apart (median; 2e-7 at worst) — and the float32 noise
    between Keras and LiteRT (1e-6) swapped neighbours: the exported file failed
    verification (max |Δprob| 0.2). Centred, the gaps are 60× wider.

    Weights (non-trainable): ``references [N, D]`` float32, ``labels [N]`` int32 and, for
    cosine, ``center [D]`` (the references' mean); fill them with :meth:`set_reference`.
    Input ``[B, D]``; output ``[B, C]`` log vote fractions.

    Its :class:`~kcv.capabilities.Capabilities` (also the registry's for ``knn``): fitted
    from references, no Grad-CAM (a vote has no gradient), ties (see :func:`neighbour_ties`).
    """

    capabilities = Capabilities(fit="references", gradcam=False, ties=True,
                                why="a k-NN model predicts by a nearest-neighbour vote, which has no gradients "
                                    "(explain the classifier its --backbone came from instead)")
    tie_rule = f"k-NN neighbour tie (k-th and (k+1)-th distance within {TIE_REL:g})"

    def __init__(self, num_references: int, num_classes: int, k: int = 5, metric: str = "l2",
                 weighting: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise KcvError(f"metric='{metric}': choose one of {', '.join(METRICS)}")
        if weighting not in WEIGHTINGS:
            raise KcvError(f"weighting='{weighting}': choose one of {', '.join(WEIGHTINGS)}")
        if not 1 <= int(k) <= int(num_references):
            raise KcvError(f"k={k}: must be between 1 and the {num_references} reference samples")
        self.num_references, self.num_classes = int(num_references), int(num_classes)
        self.k, self.metric, self.weighting = int(k), metric, weighting

    def build(self, input_shape):
        self.references = self.add_weight(shape=(self.num_references, int(input_shape[-1])),
                                          initializer="zeros", trainable=False, name="references")
        self.labels = self.add_weight(shape=(self.num_references,), initializer="zeros",
                                      dtype="int32", trainable=False, name="labels")
        if self.metric == "cosine":
            self.center = self.add_weight(shape=(int(input_shape[-1]),), initializer="zeros",
                                          trainable=False, name="center")

    def set_reference(self, features, labels) -> None:
        """Store ``features [N, D]`` and integer ``labels [N]`` as the reference set."""
        features, labels = np.asarray(features, np.float32), np.asarray(labels).astype(np.int32)
        if features.shape != tuple(self.references.shape) or labels.shape != (self.num_references,):
            raise ValueError(f"reference set {features.shape}/{labels.shape} does not match "
                             f"{tuple(self.references.shape)}")
        self.references.assign(features)
        self.labels.assign(labels)
        if self.metric == "cosine":
            self.center.assign(features.astype(np.float64).mean(axis=0).astype(np.float32))

    def neighbours(self, x, k: int | None = None):
        """``(distance [B, k], index [B, k])`` of the k nearest references, nearest first."""
        k = self.k if k is None else k
        x = ops.cast(x, "float32")
        refs = self.references
        if self.metric == "cosine":
            x, refs = ops.normalize(x - self.center, axis=-1), ops.normalize(refs - self.center, axis=-1)
            sim, idx = ops.top_k(ops.matmul(x, ops.transpose(refs)), k)
            return ops.maximum(1.0 - sim, 0.0), idx
        # ||x − r||² = ||x||² − 2 x·r + ||r||²: one matmul for the whole batch.
        sq = (ops.sum(x * x, axis=-1, keepdims=True) - 2.0 * ops.matmul(x, ops.transpose(refs))
              + ops.sum(refs * refs, axis=-1)[None, :])
        neg, idx = ops.top_k(-sq, k)
        return ops.sqrt(ops.maximum(-neg, 0.0)), idx

    def call(self, x):
        dist, idx = self.neighbours(x)
        votes = ops.one_hot(ops.take(self.labels, idx, axis=0), self.num_classes)  # [B, k, C]
        if self.weighting == "distance":
            votes = votes / (dist[..., None] + EPSILON)
        votes = ops.sum(votes, axis=1) + SMOOTHING * ops.sum(votes, axis=(1, 2))[:, None]
        return ops.log(votes / ops.sum(votes, axis=-1, keepdims=True))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def macs_per_image(self) -> int:
        """One distance matmul per image, [1, D] × [D, N] (read by :mod:`kcv.models.analysis`)."""
        refs = self.references.shape
        return int(refs[0]) * int(refs[1])

    def tie_mask(self, model: keras.Model, images):
        """:func:`neighbour_ties` of ``model`` (the ``ties`` capability's protocol)."""
        return neighbour_ties(model, images)

    def get_config(self):
        return {**super().get_config(), "num_references": self.num_references,
                "num_classes": self.num_classes, "k": self.k, "metric": self.metric,
                "weighting": self.weighting}


def neighbour_ties(model: keras.Model, images, rel: float = TIE_REL, batch_size: int = 64):
    """Which ``images`` sit at a neighbour tie of ``model``'s k-NN vote; ``None`` if it has none.

    A vote is discontinuous: when the k-th and (k+1)-th nearest references are equally far
    (to ``rel`` of the distance), the float noise of any other runtime (LiteRT's and
    onnxruntime's convolutions differ from TensorFlow's by ~1e-6) can swap them and change
    the vote fractions by 1/k. Export verification leaves such images out of max |Δprob|
    and reports how many there were.
    """
    layer = next((lyr for lyr in model.layers if isinstance(lyr, NearestNeighbors)), None)
    if layer is None or layer.k >= layer.num_references:
        return None
    features = keras.Model(model.inputs[0], layer.input)
    ties = []
    for start in range(0, len(images), batch_size):
        dist, _ = layer.neighbours(features(np.asarray(images[start:start + batch_size], np.float32)), layer.k + 1)
        dist = np.asarray(dist, np.float64)
        gap = dist[:, -1] - dist[:, -2]
        ties.append(gap <= rel * np.maximum(dist[:, -1], 1e-12))
    return np.concatenate(ties)


def build_knn(num_classes: int, input_shape, k: int = 5, metric: str = "l2",
              weighting: str = "uniform", reference_size: int | None = None,
              features: keras.Model | None = None, name: str = "knn") -> keras.Model:
    """Build a k-NN classifier with an empty (zero) reference set of ``reference_size`` rows.

    Args:
        features: a model mapping the image to a feature vector (a trained classifier's
            trunk); ``None`` compares raw pixels scaled to [-1, 1].
        reference_size: N; defaults to ``k``. :mod:`kcv.train.knn` uses the training set size.

    The reference-set layer is named ``logits`` (the main output, docs/design.md §6); its input is
    the feature vector.
    """
    reference_size = int(k if reference_size is None else reference_size)
    if features is None:
        inputs, x = normalized_input(input_shape)
    else:
        inputs = keras.Input(shape=tuple(input_shape), name="image")
        x = features(inputs)
    if len(x.shape) > 2:
        x = layers.Flatten(name=f"{name}_flatten")(x)
    scores = NearestNeighbors(reference_size, num_classes, k, metric, weighting, name=LOGITS_LAYER)(x)
    return keras.Model(inputs, scores, name=name)


@register("knn", task="classification", family="knn", min_size=8,
          paper="Cover & Hart 1967", capabilities=NearestNeighbors.capabilities,
          train_defaults={"img_size": 32, "epochs": 1, "batch_size": 64, "lr": 1e-3})
def knn(num_classes, input_shape=(32, 32, 3), k=5, metric="l2", weighting="uniform",
        reference_size=None):
    """k-NN on raw pixels (``kcv train --arch knn``; ``--backbone RUN`` for learned features)."""
    return build_knn(num_classes, input_shape, k, metric, weighting, reference_size)
