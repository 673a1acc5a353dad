"""How good each part of IRN is against the ground truth: the IR labels IRNet learns from, the
edge map it predicts and the random walk's scores before thresholding.

When ``irn`` pseudo masks are worse than the CAMs they start from, these say which part failed:
IR labels that are few or wrong (precision, recall and the ignored share per class), an edge
map that misses the object boundaries (boundary precision / recall / F at several thresholds),
a walk whose scores are right but thresholded at the wrong background score (its mIoU over
the CAM sweep's thresholds), or a grid too coarse for the walk to work even on perfect edges
(the same walk on the ground-truth outlines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
from scipy import ndimage

from semples.cams import evaluate_cams
from semples.data.classes import IGNORE_INDEX
from semples.metrics import json_float
from semples.refine.pseudo_masks import propagated_scores

# Absolute edge-map thresholds the boundary scores are given at (IRNet's edges are sigmoid
# outputs; weak maps stay far below 0.5).
EDGE_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
EDGE_STRIDE = 4

Loader = Callable[[], np.ndarray]


def _share(numerator: float, denominator: float) -> float | None:
    return json_float(numerator / denominator if denominator else float("nan"))


def ir_label_scores(
    ir_labels: Mapping[str, Loader], gt_masks: Mapping[str, Loader], class_names: Sequence[str]
) -> dict:
    """Per class (background first in ``class_names``): ``precision`` of the pixels the IR
    labels give it, ``recall`` of its ground-truth pixels, the ``ignored`` share of those
    (255, left for IRNet to infer); overall the shares labelled background, foreground and
    ignored and the precision of all labelled pixels. Pixels the ground truth ignores are not
    counted."""
    if not ir_labels:
        raise ValueError("no IR labels to score")
    n = len(class_names)
    counts = np.zeros((n, n + 1), dtype=np.int64)  # ground truth x label (last column: ignored)
    for image_id, load in ir_labels.items():
        if image_id not in gt_masks:
            raise KeyError(f"no ground-truth mask for IR label {image_id!r}")
        label, gt = load(), gt_masks[image_id]()
        if label.shape != gt.shape:
            raise ValueError(f"IR label {image_id!r}: shape {label.shape} != gt {gt.shape}")
        scored = gt != IGNORE_INDEX
        for name, values in (("IR label", label), ("ground truth", gt)):
            bad = np.unique(values[(values != IGNORE_INDEX) & (values >= n)])
            if bad.size:
                raise ValueError(
                    f"{name} of {image_id!r} has values {bad.tolist()[:10]} outside 0..{n - 1} "
                    f"and {IGNORE_INDEX}"
                )
        truth = gt[scored].astype(np.int64)
        given = np.where(label == IGNORE_INDEX, n, label)[scored].astype(np.int64)
        counts += np.bincount(truth * (n + 1) + given, minlength=n * (n + 1)).reshape(n, n + 1)
    labelled, total = counts[:, :n], counts.sum()
    per_class = {
        name: {
            "precision": _share(labelled[k, k], labelled[:, k].sum()),
            "recall": _share(labelled[k, k], counts[k].sum()),
            "ignored": _share(counts[k, n], counts[k].sum()),
        }
        for k, name in enumerate(class_names)
    }
    return {
        "shares": {
            "background": _share(labelled[:, 0].sum(), total),
            "foreground": _share(labelled[:, 1:].sum(), total),
            "ignored": _share(counts[:, n].sum(), total),
        },
        "precision": _share(np.trace(labelled), labelled.sum()),
        "per_class": per_class,
        "num_images": len(ir_labels),
    }


def boundary_cells(gt: np.ndarray, stride: int = EDGE_STRIDE) -> np.ndarray:
    """The cells of the ``stride`` grid (``ceil(H / stride) x ceil(W / stride)``, as IRNet's edge
    map) that hold a ground-truth boundary: a pixel next to (4-neighbourhood) one of another
    label, neither of them ignored."""
    edge = np.zeros(gt.shape, dtype=bool)
    for axis in (0, 1):
        first = [slice(None)] * 2
        second = [slice(None)] * 2
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        a, b = gt[tuple(first)], gt[tuple(second)]
        differs = (a != b) & (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
        edge[tuple(first)] |= differs
        edge[tuple(second)] |= differs
    rows, cols = -(-gt.shape[0] // stride), -(-gt.shape[1] // stride)
    padded = np.zeros((rows * stride, cols * stride), dtype=bool)
    padded[: gt.shape[0], : gt.shape[1]] = edge
    return padded.reshape(rows, stride, cols, stride).any(axis=(1, 3))


class BoundaryScores:
    """Boundary precision, recall and F of edge maps against the ground truth's object
    boundaries, accumulated over images on the edge map's grid: a predicted edge cell (score >=
    a threshold) is right within ``tolerance`` cells of a boundary cell, a boundary cell is found
    within ``tolerance`` cells of a predicted one."""

    def __init__(
        self,
        thresholds: Sequence[float] = EDGE_THRESHOLDS,
        tolerance: int = 1,
        stride: int = EDGE_STRIDE,
    ) -> None:
        if tolerance < 0 or stride < 1:
            raise ValueError(f"need tolerance >= 0 and stride >= 1, got {tolerance}, {stride}")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.stride = stride
        self._near = np.ones((2 * tolerance + 1,) * 2, dtype=bool)
        self._predicted = np.zeros(len(self.thresholds), dtype=np.int64)
        self._predicted_right = np.zeros(len(self.thresholds), dtype=np.int64)
        self._found = np.zeros(len(self.thresholds), dtype=np.int64)
        self._boundary = 0
        self._score_sums = np.zeros(2)  # on boundary cells, elsewhere
        self._cells = np.zeros(2, dtype=np.int64)
        self._max = 0.0

    def add(self, edge: np.ndarray, gt: np.ndarray) -> None:
        truth = boundary_cells(gt, self.stride)
        if edge.shape != truth.shape:
            raise ValueError(
                f"edge map {edge.shape} does not match the ground truth {gt.shape} at stride "
                f"{self.stride} ({truth.shape})"
            )
        near_truth = ndimage.binary_dilation(truth, self._near)
        for i, threshold in enumerate(self.thresholds):
            predicted = edge >= threshold
            self._predicted[i] += predicted.sum()
            self._predicted_right[i] += (predicted & near_truth).sum()
            self._found[i] += (truth & ndimage.binary_dilation(predicted, self._near)).sum()
        self._boundary += truth.sum()
        self._score_sums += edge[truth].sum(), edge[~truth].sum()
        self._cells += truth.sum(), (~truth).sum()
        self._max = max(self._max, float(edge.max(initial=0.0)))

    def to_dict(self) -> dict:
        """Per threshold precision / recall / F, the best F and its threshold, and the mean edge
        score on boundary cells and elsewhere (how far apart the map puts them)."""
        sweep = []
        for i, threshold in enumerate(self.thresholds):
            precision = _share(self._predicted_right[i], self._predicted[i])
            recall = _share(self._found[i], self._boundary)
            if precision is None or recall is None:
                f = None
            else:
                f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            sweep.append({"threshold": threshold, "precision": precision, "recall": recall, "f": f})
        scored = [row for row in sweep if row["f"] is not None]
        best = max(scored, key=lambda row: row["f"]) if scored else None
        return {
            "best_f": None if best is None else best["f"],
            "best_threshold": None if best is None else best["threshold"],
            "sweep": sweep,
            "mean_on_boundary": _share(self._score_sums[0], self._cells[0]),
            "mean_elsewhere": _share(self._score_sums[1], self._cells[1]),
            "max": self._max,
            "boundary_cells": int(self._boundary),
        }


def _gt_edge_walk(
    load_cam: Callable[[], Mapping[str, np.ndarray]],
    load_gt: Loader,
    walk: Mapping,
    edge_stride: int,
) -> dict[str, np.ndarray]:
    cam, gt = load_cam(), load_gt()
    edge = boundary_cells(gt, edge_stride).astype(np.float32)
    return {"keys": cam["keys"], "cam": propagated_scores(cam, edge, gt.shape, walk, edge_stride)}


def gt_edge_walks(
    cams: Mapping[str, Callable[[], Mapping[str, np.ndarray]]],
    gt_masks: Mapping[str, Loader],
    walk: Mapping,
    edge_stride: int = EDGE_STRIDE,
) -> dict[str, Callable[[], dict[str, np.ndarray]]]:
    """The random walk of each image's CAMs on its ground-truth outlines (edge 1 on
    :func:`boundary_cells`, 0 elsewhere) instead of IRNet's edge map: what ``irn`` reaches from
    these CAMs on this grid with a perfect edge map. On a grid where objects are a few cells
    wide every object cell is an outline cell and the walk cannot spread even then."""
    return {
        image_id: partial(_gt_edge_walk, cams[image_id], gt_masks[image_id], walk, edge_stride)
        for image_id in cams
    }


def irn_diagnostics(
    ir_labels: Mapping[str, Loader],
    walks: Mapping[str, Callable[[], Mapping[str, np.ndarray]]],
    gt_masks: Mapping[str, Loader],
    class_names: Sequence[str],
    thresholds: Sequence[float],
    walk_threshold: float,
    context_maps: Mapping[str, Loader] | None = None,
    edge_stride: int = EDGE_STRIDE,
    perfect_edge_walks: Mapping[str, Callable[[], Mapping[str, np.ndarray]]] | None = None,
) -> dict:
    """The IR labels' scores, the edge maps' boundary scores and the walk's scores before
    thresholding (``walks``: id -> ``{"keys", "cam": walk scores, "edge"}``, one pass over the
    images), the last as :func:`~semples.cams.evaluate_cams` over ``thresholds`` with the mIoU
    at the run's ``walk_threshold`` beside its best; ``class_names`` without background;
    ``edge_stride``: the edge maps' stride (IRNet's). With ``perfect_edge_walks``
    (:func:`gt_edge_walks`) also ``walk_on_gt_edges``: the same walk's best mIoU on the
    ground-truth outlines, the bound a better edge map could reach."""
    boundaries = BoundaryScores(stride=edge_stride)

    def scored(image_id: str, load: Callable[[], Mapping[str, np.ndarray]]) -> Callable:
        def record() -> Mapping[str, np.ndarray]:
            walk = load()  # evaluate_cams has checked that the image has ground truth
            try:
                boundaries.add(walk["edge"], gt_masks[image_id]())
            except ValueError as error:
                raise ValueError(f"{image_id!r}: {error}") from error
            return walk

        return record

    walk = evaluate_cams(
        {image_id: scored(image_id, load) for image_id, load in walks.items()},
        gt_masks, class_names, thresholds, context_maps,
    )  # fmt: skip
    at_run = [row["miou"] for row in walk["sweep"] if np.isclose(row["threshold"], walk_threshold)]
    walk = {key: walk[key] for key in ("miou", "best_threshold", "per_class_iou", "sweep")} | {
        "threshold": walk_threshold,
        "miou_at_threshold": at_run[0] if at_run else None,
        "context_leak": None if walk["context_leak"] is None else walk["context_leak"]["overall"],
    }
    names = ["background", *class_names]
    scores = {
        "ir_labels": ir_label_scores(ir_labels, gt_masks, names),
        "edges": boundaries.to_dict(),
        "walk": walk,
    }
    if perfect_edge_walks is not None:
        bound = evaluate_cams(perfect_edge_walks, gt_masks, class_names, thresholds)
        scores["walk_on_gt_edges"] = {
            key: bound[key] for key in ("miou", "best_threshold", "per_class_iou")
        }
    return scores
