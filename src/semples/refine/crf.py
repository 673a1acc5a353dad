"""Fully connected CRF (Krähenbühl & Koltun) over per-pixel class probabilities.

CAMs are blurry and ignore colour edges; mean-field inference in a dense CRF with Potts
compatibility pulls the class boundaries onto the image's edges. It is used twice: to make IRN's
confident foreground/background regions from thresholded CAMs, and as a standalone refinement of
CAMs into pseudo masks. :func:`crf_present_classes` restricts the CRF to background plus the
image's labelled classes, since the cost of inference grows with the number of labels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pydensecrf.densecrf as dcrf

_PROB_CLIP = 1e-8
_SUM_TOLERANCE = 1e-3


def _validate(image: np.ndarray, probs: np.ndarray) -> None:
    """Raise ValueError naming the first problem with the inputs of :func:`dense_crf`."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be an H x W x 3 uint8 array, got shape {image.shape} dtype {image.dtype}"
        )
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"probs must be a C x H x W array with C >= 1, got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError(f"probs has {int((~np.isfinite(probs)).sum())} non-finite values")
    if (probs < 0).any():
        raise ValueError(f"probs has negative values (minimum {float(probs.min()):.4g})")
    deviation = float(np.abs(probs.sum(axis=0, dtype=np.float64) - 1.0).max())
    if deviation > _SUM_TOLERANCE:
        raise ValueError(
            f"probs must sum to 1 over the classes at every pixel, worst deviation {deviation:.4g}"
        )
    if image.shape[:2] != probs.shape[1:]:
        raise ValueError(
            f"image size {image.shape[:2]} (H x W) differs from probs size {probs.shape[1:]}"
        )


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    *,
    iterations: int = 10,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 50,
    bilateral_srgb: float = 5,
    bilateral_compat: float = 10,
) -> np.ndarray:
    """Mean-field marginals (C x H x W float32, summing to 1) of a dense CRF on ``image``.

    ``image`` is H x W x 3 uint8, ``probs`` C x H x W class probabilities summing to 1 per pixel.
    The unary is -log(probs) (clipped away from 0); the pairwise terms are a smoothness Gaussian
    and an appearance (position + colour) bilateral kernel, both with Potts compatibility.
    """
    _validate(image, probs)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    scales = {
        "gaussian_sxy": gaussian_sxy,
        "bilateral_sxy": bilateral_sxy,
        "bilateral_srgb": bilateral_srgb,
    }
    bad = {name: value for name, value in scales.items() if not value > 0}
    if bad:
        raise ValueError(f"kernel widths must be positive, got {bad}")

    classes, height, width = probs.shape
    unary = -np.log(np.clip(probs, _PROB_CLIP, None)).reshape(classes, -1)
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy,
        srgb=bilateral_srgb,
        rgbim=np.array(image, order="C"),  # a writable copy: pydensecrf rejects read-only
        compat=bilateral_compat,
    )
    marginals = np.asarray(crf.inference(iterations), dtype=np.float32)
    return marginals.reshape(classes, height, width)


def crf_present_classes(
    image: np.ndarray, probs: np.ndarray, present: Iterable[int], **crf_kwargs: float
) -> np.ndarray:
    """:func:`dense_crf` over background (channel 0) and the ``present`` channels only.

    ``probs`` is (K+1) x H x W over background and all K classes; the selected channels are
    renormalised to sum 1 before the CRF. Returns a (K+1) x H x W float32 array that is zero in
    the absent channels, so its argmax indexes the same classes as ``probs``. Keyword arguments
    go to :func:`dense_crf`.
    """
    if probs.ndim != 3:
        raise ValueError(f"probs must be a (K+1) x H x W array, got shape {probs.shape}")
    channels = np.array(sorted({0, *(int(index) for index in present)}))
    if channels[-1] >= probs.shape[0] or channels[0] < 0:
        raise ValueError(
            f"present channels {channels.tolist()} out of range for {probs.shape[0]} channels"
        )
    selected = probs[channels]
    total = selected.sum(axis=0, keepdims=True)
    if (total <= 0).any():
        raise ValueError(
            f"probs is zero over the present channels {channels.tolist()} at "
            f"{int((total <= 0).sum())} pixels"
        )
    refined = np.zeros(probs.shape, dtype=np.float32)
    refined[channels] = dense_crf(image, selected / total, **crf_kwargs)
    return refined
