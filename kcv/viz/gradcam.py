"""Grad-CAM: where a classifier looks (Selvaraju et al., "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV 2017).

For class ``c`` with logit ``y_c`` and a convolutional feature map ``A`` (``h × w × K``):

    α_k = mean_ij ∂y_c / ∂A_ij^k          (global-average-pooled gradients, eq. 1)
    L_c = ReLU(Σ_k α_k A^k)                (eq. 2; ReLU keeps what speaks *for* c)

``L_c`` is normalised to [0, 1] per image and upsampled bilinearly to the input. The paper
uses the pre-softmax score ``y_c``, as here (the softmax would mix in the other classes).

The feature map defaults to the last convolutional one of the main head: the last rank-4
tensor before global pooling (:func:`kcv.models.analysis.last_feature_map`), walking back over
trailing pooling layers (VGG's ``block5_pool``, AlexNet's ``pool5``/adaptive pool), which only
coarsen the map — the paper's VGG-16 maps come from the last conv layer, before the pool.
That works for every registered classifier, including GoogLeNet (its aux heads are not on the
main path), DenseNet and EfficientNet. k-NN is refused: its prediction is a nearest-neighbour
vote, which has no gradient.

The gradient is taken with ``tf.GradientTape``: Grad-CAM is inference-time plumbing, like
export, not a layer of a model.
"""

from __future__ import annotations

import difflib

import keras
import numpy as np

from kcv import capabilities, compat
from kcv.contracts import main_output
from kcv.errors import KcvError
from kcv.layers.adaptive_pool import AdaptiveAvgPool2D
from kcv.models.analysis import last_feature_map

# Layers that only coarsen a map: Grad-CAM reads the map before them.
_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, AdaptiveAvgPool2D)


def _is_map(shape) -> bool:
    return shape is not None and len(shape) == 4


def _refuse_without_gradcam(model) -> None:
    caps = capabilities.of_model(model)
    if not caps.gradcam:
        raise KcvError(f"Grad-CAM needs gradients of a convolutional feature map, and "
                       f"{caps.why or model.name + ' has none'}")


def default_target(model: keras.Model):
    """``(tensor, layer name)`` of the last convolutional feature map of ``model``'s main head."""
    start, _ = last_feature_map(model)
    for tensor, call in compat.walk_up([start], first_input=True):  # back over pooling
        below = call.inputs
        if not isinstance(call.layer, _POOLS) or not below or not _is_map(below[0].shape):
            break
    op = call.layer
    if any(tensor is t for t in model.inputs) or isinstance(op, keras.layers.InputLayer):
        raise KcvError(f"{model.name}: no convolutional feature map before the classifier head; "
                       "name one with --layer")
    return tensor, op.name


def named_target(model: keras.Model, layer: str):
    """``(tensor, name)`` of the output of the layer called ``layer`` (must be rank 4)."""
    maps = [lyr.name for lyr in model.layers if _has_map_output(lyr)]
    try:
        found = model.get_layer(layer)
    except ValueError:
        close = difflib.get_close_matches(layer, maps, n=3, cutoff=0.5)
        hint = (f"did you mean {', '.join(close)}?" if close
                else f"the last ones with a feature map: {', '.join(maps[-3:])}")
        raise KcvError(f"--layer {layer}: no such layer in {model.name}; {hint}") from None
    if not _has_map_output(found):
        raise KcvError(f"--layer {layer}: its output is not one feature map (batch, height, width, channels)")
    return found.output, found.name


def _has_map_output(layer) -> bool:
    try:
        out = layer.output
    except (AttributeError, ValueError):  # unbuilt, or called several times
        return False
    if isinstance(out, (list, tuple)) or isinstance(layer, keras.layers.InputLayer):
        return False
    return _is_map(out.shape)


class GradCam:
    """Grad-CAM heat maps of a Keras classifier (Selvaraju et al. 2017).

    Args:
        model: a kcv classifier (training model: logits first; aux heads are ignored).
        layer: name of the layer whose rank-4 output is explained; ``None`` = the last
            convolutional feature map of the main head (:func:`default_target`).

    Attributes:
        layer: the name of the explained layer.
        model: ``keras.Model(inputs, [feature map, logits])``.
    """

    def __init__(self, model: keras.Model, layer: str | None = None):
        _refuse_without_gradcam(model)
        tensor, self.layer = default_target(model) if layer is None else named_target(model, layer)
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # same structure as model
        self.model = keras.Model(inputs, [tensor, main_output(model)], name=f"{model.name}_gradcam")
        self.map_shape = tuple(tensor.shape[1:3])

    def __call__(self, images, class_index=None):
        """Heat maps of a batch of images.

        Args:
            images: ``float [B, H, W, 3]`` raw RGB pixels in [0, 255], at the model's size.
            class_index: the class explained (int, or ``[B]`` ints); ``None`` = each image's
                predicted class.

        Returns:
            ``(heat [B, h, w] in [0, 1] at the feature map's size, classes [B], probs [B, C])``.
        """
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(images, np.float32))
        with tf.GradientTape() as tape:
            fmap, logits = self.model(x, training=False)
            logits = tf.cast(logits, tf.float32)
            if class_index is None:
                classes = tf.argmax(logits, axis=-1, output_type=tf.int32)
            else:
                classes = tf.broadcast_to(tf.constant(class_index, tf.int32), tf.shape(logits)[:1])
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = tf.cast(tape.gradient(score, fmap), tf.float32)
        fmap = tf.cast(fmap, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # α_k, eq. 1
        cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1)).numpy()  # eq. 2
        peak = cam.max(axis=(1, 2), keepdims=True)
        # all-zero map (the class has no positive evidence anywhere): leave it at zero
        cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
        return cam, classes.numpy(), tf.nn.softmax(logits).numpy()


def upsample(heat: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of one heat map ``[h, w]`` to ``size = (H, W)``, clipped to [0, 1].

    Half-pixel centres (TensorFlow 2's default) align the map's cells with the input pixels
    they come from under "same" padding.
    """
    import tensorflow as tf

    out = tf.image.resize(np.asarray(heat, np.float32)[..., None], tuple(size), method="bilinear")
    return np.clip(out.numpy()[..., 0], 0.0, 1.0)


def colorize(heat: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` colours of a heat map in [0, 1] (the shared style's heat-map colours)."""
    import matplotlib

    from kcv.viz.style import HEATMAP_CMAP

    rgba = matplotlib.colormaps[HEATMAP_CMAP](np.clip(heat, 0.0, 1.0))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the coloured heat map (upsampled to the image) over ``image`` (``uint8 [H, W, 3]``)."""
    full = upsample(heat, image.shape[:2])
    out = (1 - alpha) * image.astype(np.float32) + alpha * colorize(full).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def mass_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the heat map's mass (upsampled to the mask) that lies inside ``mask``."""
    full = upsample(heat, mask.shape[:2])
    total = float(full.sum())
    return float((full * (np.asarray(mask) > 0)).sum() / total) if total > 0 else 0.0


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (square structuring element), e.g. to score the heat
    within one feature-map cell of an object."""
    mask = np.asarray(mask, bool)
    pad, out = np.pad(mask, radius), np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= pad[dy:dy + h, dx:dx + w]
    return out


def localisation(heat: np.ndarray, masks: np.ndarray, cell: int) -> dict:
    """Per image, how well heat maps ``[B, h, w]`` find objects of known ``masks [B, H, W]``:
    ``inside`` (mass inside the mask), ``near`` (mass within ``cell`` pixels of it),
    ``peak_inside`` / ``peak_near`` (where the upsampled peak lies: the pointing game of
    Zhang et al., ECCV 2016, with a ``cell``-pixel tolerance)."""
    masks = np.asarray(masks) > 0
    near = np.stack([dilate(m, cell) for m in masks])
    peaks = [np.unravel_index(upsample(h, m.shape).argmax(), m.shape) for h, m in zip(heat, masks)]
    return {"inside": np.array([mass_inside(h, m) for h, m in zip(heat, masks)]),
            "near": np.array([mass_inside(h, m) for h, m in zip(heat, near)]),
            "peak_inside": np.array([m[p] for m, p in zip(masks, peaks)]),
            "peak_near": np.array([m[p] for m, p in zip(near, peaks)]),
            "near_area": near.mean(axis=(1, 2))}
