"""From CAMs to pixel labels: IRN's confident-region labels and the final pseudo masks.

Both work on one image's CAM record (``keys``: label values of the present classes, ``cam``:
their C x H x W maps, ``cam_stride4``: the same at stride 4, each max-normalised), so the dense
CRF only ever sees the present classes plus background.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from semples.refine.crf import dense_crf
from semples.refine.random_walk import random_walk, walk_scores

REFINE_MODES = ("none", "crf", "irn", "irn+crf")
IGNORE = 255
_SCORE_FLOOR = 1e-5


def with_background(scores: np.ndarray, threshold: float) -> np.ndarray:
    """(C+1) x H x W probabilities: a constant background score ``threshold`` before the C class
    scores, normalised per pixel. Their argmax is the usual thresholded CAM labelling; the CRF
    needs them as a distribution."""
    if scores.ndim != 3:
        raise ValueError(f"scores must be C x H x W, got shape {scores.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"background threshold must be in (0, 1], got {threshold}")
    background = np.full((1, *scores.shape[1:]), threshold, dtype=np.float32)
    stacked = np.concatenate([background, np.clip(scores, _SCORE_FLOOR, None)]).astype(np.float32)
    return stacked / stacked.sum(axis=0, keepdims=True)


def label_confidence(labels: np.ndarray, num_labels: int, confidence: float = 0.7) -> np.ndarray:
    """A label map as probabilities: ``confidence`` on its label, the rest shared by the others
    (pydensecrf's ``unary_from_labels``, which IRN's label CRF uses)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_labels < 2:
        return np.ones((1, *labels.shape), dtype=np.float32)
    probs = np.full((num_labels, *labels.shape), (1 - confidence) / (num_labels - 1), np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), confidence, axis=0)
    return probs


def _crf_labels(image: np.ndarray, labels: np.ndarray, num_labels: int, crf: Mapping) -> np.ndarray:
    return dense_crf(image, label_confidence(labels, num_labels), **crf).argmax(axis=0)


def ir_label(
    image: np.ndarray,
    cam: Mapping[str, np.ndarray],
    fg_threshold: float = 0.30,
    bg_threshold: float = 0.05,
    crf: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """IRN's inter-pixel relation label: confident classes, confident background, 255 between.

    The CAMs are labelled twice, against a high (``fg_threshold``) and a low (``bg_threshold``)
    background score, and each labelling is cleaned by the CRF: a pixel keeps its class where
    the high-threshold labelling finds one, is background where even the low-threshold one says
    background, and is ignored otherwise.
    """
    if not 0.0 < bg_threshold < fg_threshold <= 1.0:
        raise ValueError(
            f"need 0 < bg_threshold < fg_threshold <= 1, got {bg_threshold} and {fg_threshold}"
        )
    values = np.concatenate([[0], np.asarray(cam["keys"])])
    crf = dict(crf or {})
    fg = _crf_labels(image, with_background(cam["cam"], fg_threshold).argmax(0), len(values), crf)
    bg = _crf_labels(image, with_background(cam["cam"], bg_threshold).argmax(0), len(values), crf)
    label = np.where(fg > 0, values[fg], IGNORE)
    label[(fg == 0) & (bg == 0)] = 0
    return label.astype(np.uint8)


def propagated_scores(
    cam: Mapping[str, np.ndarray],
    edge: np.ndarray,
    image_size: tuple[int, int],
    walk: Mapping[str, Any] | None = None,
    edge_stride: int = 4,
) -> np.ndarray:
    """IRN's random walk of the CAMs on ``edge`` (IRNet's boundary map at ``edge_stride`` of the
    image), upsampled to ``image_size`` and max-normalised (C x H x W): the scores ``irn``
    thresholds. At stride 4 the walk starts from the stride-4 CAMs, as IRN's; at a finer stride
    from the full-resolution CAMs averaged over each cell. ``walk``: the ``pseudo_masks.walk``
    settings; its ``bg_threshold`` is for thresholding, not the walk."""
    settings = {key: value for key, value in (walk or {}).items() if key != "bg_threshold"}
    if edge_stride == 4:
        seeds = torch.from_numpy(cam["cam_stride4"])
    else:
        full = torch.from_numpy(cam["cam"])[None]
        seeds = F.avg_pool2d(full, edge_stride, ceil_mode=True)[0]
    propagated = random_walk(seeds, torch.from_numpy(edge), **settings)
    return walk_scores(propagated, image_size, edge_stride).numpy()


def pseudo_mask(
    image: np.ndarray,
    cam: Mapping[str, np.ndarray],
    mode: str,
    cam_threshold: float,
    edge: np.ndarray | None = None,
    walk: Mapping[str, Any] | None = None,
    crf: Mapping[str, Any] | None = None,
    edge_stride: int = 4,
) -> np.ndarray:
    """One image's pseudo mask (label values, uint8) by ``mode``:

    ``none``: the CAMs against a constant background score ``cam_threshold``; ``crf``: the same
    probabilities refined by the dense CRF; ``irn``: IRN's random walk of the CAMs on ``edge``
    (IRNet's boundary map at ``edge_stride``; :func:`propagated_scores`), thresholded at
    ``walk["bg_threshold"]``; ``irn+crf``: the walk's probabilities refined by the CRF.
    """
    if mode not in REFINE_MODES:
        raise ValueError(f"refine mode must be one of {REFINE_MODES}, got {mode!r}")
    values = np.concatenate([[0], np.asarray(cam["keys"])]).astype(np.uint8)
    if mode in ("none", "crf"):
        probs = with_background(cam["cam"], cam_threshold)
    else:
        if edge is None:
            raise ValueError(f"refine mode {mode!r} needs the IRNet edge map")
        threshold = (walk or {}).get("bg_threshold", 0.25)
        scores = propagated_scores(cam, edge, image.shape[:2], walk, edge_stride)
        probs = with_background(scores, threshold)
    if mode.endswith("crf"):
        probs = dense_crf(image, probs, **dict(crf or {}))
    return values[probs.argmax(axis=0)]
