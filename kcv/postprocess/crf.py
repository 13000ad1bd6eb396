"""Fully connected CRF refinement of a softmax map (Krähenbühl & Koltun, "Efficient
Inference in Fully Connected CRFs with Gaussian Edge Potentials", NIPS 2011), as DeepLab
v1/v2 used it after the network.

Mean-field inference with a smoothness (Gaussian) kernel on positions and an appearance
(bilateral) kernel on positions and colours, computed by the permutohedral-lattice
implementation of the maintained ``pydensecrf2`` package (the authors' C++ code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kcv.errors import KcvError


@dataclass(frozen=True)
class CRFParams:
    """Kernel parameters; defaults scaled for small images (DeepLab used sxy=80 at ~500 px).

    Attributes:
        iterations: mean-field steps.
        gaussian_sxy / gaussian_compat: smoothness kernel width (px) and weight.
        bilateral_sxy / bilateral_srgb / bilateral_compat: appearance kernel widths (px, colour)
            and weight.
    """

    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 20.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise KcvError("--crf needs the pydensecrf2 package: pip install 'kcv[crf]'") from None
    return dcrf


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Refine ``probs`` (``[H, W, C]`` softmax) with a dense CRF on ``image`` (``[H, W, 3]``).

    Returns:
        Refined probabilities ``float32 [H, W, C]``.
    """
    dcrf = _densecrf()
    h, w, c = probs.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image {image.shape[:2]} and probabilities {(h, w)} differ in size")
    unary = -np.log(np.clip(probs, 1e-8, 1.0)).transpose(2, 0, 1).reshape(c, -1)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    rgb = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb, rgbim=rgb,
                             compat=params.bilateral_compat)
    q = np.array(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(c, h, w).transpose(1, 2, 0)


def crf_postprocess(params: CRFParams = CRFParams()):
    """The ``postprocess(image, probs) -> probs`` hook of ``kcv predict --crf`` / ``kcv eval --crf``;
    fails now, with the install hint, if ``pydensecrf2`` is missing."""
    _densecrf()
    return lambda image, probs: dense_crf(image, probs, params)


def dense_crf_batch(images: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """:func:`dense_crf` over a batch ``[N, H, W, ·]``."""
    return np.stack([dense_crf(img, p, params) for img, p in zip(images, probs)])
