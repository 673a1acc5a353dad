"""Segmentation scores from confusion matrices, the CAM background-threshold sweep, and the
context leak (how much of an object's co-occurring context is labelled as the object).

Everything is accumulated as an integer confusion matrix (rows = ground truth, columns =
prediction) so that a whole split can be streamed image by image and the scores derived once at
the end, exactly as MMSegmentation's ``IoUMetric`` sums areas before dividing. Inputs are numpy
arrays only: convert torch tensors with ``tensor.cpu().numpy()`` first, which keeps this module
free of torch.

Label convention: 0 = background, 1..K = foreground classes, ``ignore_index`` (255) = not scored.
A context map (toy world) holds k where the context of an object of class k shows, 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from semples.data.classes import IGNORE_INDEX
from semples.progress import progress_bar

_MAX_LISTED_VALUES = 10


def _require_array(name: str, value: object) -> np.ndarray:
    """Reject non-numpy inputs early: a torch tensor would otherwise fail deep inside numpy."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    return value


def _check_label_range(name: str, values: np.ndarray, num_classes: int) -> None:
    """Raise a ValueError listing the label values outside [0, num_classes)."""
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        offending = np.unique(values[bad])
        listed = ", ".join(str(v) for v in offending[:_MAX_LISTED_VALUES].tolist())
        more = ", ..." if offending.size > _MAX_LISTED_VALUES else ""
        raise ValueError(f"{name} values outside [0, {num_classes}): [{listed}{more}]")


def _require_labels(name: str, value: object) -> np.ndarray:
    """A numpy array of integer labels (float masks usually mean a missed conversion)."""
    array = _require_array(name, value)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {array.dtype}")
    return array


def _scored_gt(
    gt: np.ndarray, num_classes: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """The mask of scored pixels and their ground-truth labels (int64), validated."""
    scored = gt != ignore_index
    labels = gt[scored].astype(np.int64)
    _check_label_range(f"gt (other than ignore_index {ignore_index})", labels, num_classes)
    return scored, labels


def _check_num_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")


def confusion_matrix(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """int64 ``num_classes x num_classes`` counts, rows = ground truth, columns = prediction.

    Pixels whose gt is ``ignore_index`` are skipped (every pred value is still range-checked: an
    out-of-range prediction is a bug wherever it sits). When ``out`` is given the counts are
    added to it in place and it is returned, so a split can be streamed image by image.
    """
    _check_num_classes(num_classes)
    pred, gt = _require_labels("pred", pred), _require_labels("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    if out is None:
        out = np.zeros((num_classes, num_classes), dtype=np.int64)
    elif out.shape != (num_classes, num_classes) or out.dtype != np.int64:
        raise ValueError(
            f"out must be int64 of shape {(num_classes, num_classes)}, "
            f"got {out.dtype} of shape {out.shape}"
        )
    _check_label_range("pred", pred, num_classes)
    scored, gt_labels = _scored_gt(gt, num_classes, ignore_index)
    pairs = gt_labels * num_classes + pred[scored].astype(np.int64)
    out += np.bincount(pairs, minlength=num_classes * num_classes).reshape(out.shape)
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division with NaN where the denominator is 0 (the score is undefined)."""
    result = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


def json_float(value: float) -> float | None:
    """JSON has no NaN: an undefined score is written as null."""
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """Scores of one confusion matrix; per-class arrays are indexed by label value.

    ``miou`` is the mean over classes with a defined IoU (NaN ones, absent from both prediction
    and ground truth, are left out), as MMSegmentation's ``IoUMetric`` computes it.
    """

    iou: np.ndarray
    miou: float
    precision: np.ndarray
    recall: np.ndarray
    pixel_accuracy: float

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """JSON-ready report; ``class_names`` are indexed by label value (background first)."""
        if len(class_names) != len(self.iou):
            raise ValueError(f"{len(class_names)} class names for {len(self.iou)} classes")

        def per_class(values: np.ndarray) -> dict[str, float | None]:
            return {name: json_float(v) for name, v in zip(class_names, values, strict=True)}

        return {
            "miou": json_float(self.miou),
            "per_class_iou": per_class(self.iou),
            "per_class_precision": per_class(self.precision),
            "per_class_recall": per_class(self.recall),
            "pixel_accuracy": json_float(self.pixel_accuracy),
        }


def nanmean(values: np.ndarray) -> float:
    """Mean of the defined values; NaN (without numpy's empty-slice warning) when there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def iou_from_confusion(cm: np.ndarray) -> SegmentationScores:
    """IoU, precision, recall and pixel accuracy of an accumulated confusion matrix."""
    cm = _require_array("cm", cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    true_positive = np.diag(cm).astype(np.float64)
    gt_area = cm.sum(axis=1).astype(np.float64)
    pred_area = cm.sum(axis=0).astype(np.float64)
    iou = _ratio(true_positive, gt_area + pred_area - true_positive)
    arrays = {
        "iou": iou,
        "precision": _ratio(true_positive, pred_area),
        "recall": _ratio(true_positive, gt_area),
    }
    for array in arrays.values():
        array.setflags(write=False)
    return SegmentationScores(
        **arrays,
        miou=nanmean(iou),
        pixel_accuracy=float(_ratio(true_positive.sum(), gt_area.sum())),
    )


class ContextLeak:
    """Share of each class's context pixels that a labelling marks as that class, over images.

    The error SemPLES's stage 3 fights is the object spreading onto its usual surroundings
    (boat marked on the water); IoU mixes it with every other error, this isolates it.
    ``overall`` pools the context pixels of all classes. Counts, not means per image, so that
    images weigh by their context area, as the confusion matrices weigh by pixels.
    """

    def __init__(self, num_classes: int) -> None:
        _check_num_classes(num_classes)
        self.num_classes = num_classes
        self.context_pixels = np.zeros(num_classes, dtype=np.int64)
        self.leaked_pixels = np.zeros(num_classes, dtype=np.int64)

    def add(self, pred: np.ndarray, context: np.ndarray) -> None:
        """Count one image: ``pred`` labels and ``context`` owners (0 = no context), same shape."""
        pred, context = _require_labels("pred", pred), _require_labels("context", context)
        if pred.shape != context.shape:
            raise ValueError(f"pred shape {pred.shape} != context shape {context.shape}")
        _check_label_range("context", context, self.num_classes)
        owners = context.ravel().astype(np.int64)
        leaked = owners[pred.ravel() == owners]
        self.add_counts(
            np.bincount(owners, minlength=self.num_classes),
            np.bincount(leaked, minlength=self.num_classes),
        )

    def add_counts(self, context_pixels: np.ndarray, leaked_pixels: np.ndarray) -> None:
        """Add per-class counts (index = label value; index 0, no context, is never reported)."""
        self.context_pixels += context_pixels
        self.leaked_pixels += leaked_pixels

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """``{"overall": x, "per_class": {name: x}}`` over the foreground classes of
        ``class_names`` (background first); null where there are no context pixels."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        context, leaked = self.context_pixels[1:], self.leaked_pixels[1:]
        per_class = _ratio(leaked, context)
        return {
            "overall": json_float(float(_ratio(leaked.sum(), context.sum()))),
            "per_class": {
                name: json_float(v) for name, v in zip(class_names[1:], per_class, strict=True)
            },
        }


def scored_context(
    context: np.ndarray, gt: np.ndarray, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """A context map with the pixels the ground truth ignores set to 0 (not counted), checked
    to match the ground truth's shape."""
    context = _require_labels("context", context)
    if context.shape != gt.shape:
        raise ValueError(f"context shape {context.shape} != gt shape {gt.shape}")
    return np.where(gt == ignore_index, 0, context)


def evaluate_label_maps(
    predictions: Mapping[str, Callable[[], np.ndarray]],
    gt_masks: Mapping[str, Callable[[], np.ndarray]],
    class_names: Sequence[str],
    context_maps: Mapping[str, Callable[[], np.ndarray]] | None = None,
) -> dict:
    """Scores of a set of label maps (background first in ``class_names``), streamed one image at
    a time into one confusion matrix; a map without ground truth or of another size raises an
    error naming the image. With ``context_maps`` (id -> loader) the report's ``context_leak``
    is :class:`ContextLeak`'s, else None."""
    if not predictions:
        raise ValueError("no label maps to evaluate")
    cm = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    leak = None if context_maps is None else ContextLeak(len(class_names))
    scored = progress_bar(predictions.items(), total=len(predictions), desc="scoring label maps",
                          unit="img", leave=False)  # fmt: skip
    for image_id, load in scored:
        if image_id not in gt_masks:
            raise KeyError(f"no ground-truth mask for {image_id!r}")
        try:
            pred, gt = load(), gt_masks[image_id]()
            confusion_matrix(pred, gt, len(class_names), out=cm)
            if leak is not None:
                leak.add(pred, scored_context(_context_of(context_maps, image_id), gt))
        except ValueError as error:
            raise ValueError(f"{image_id!r}: {error}") from error
    return {
        **iou_from_confusion(cm).to_dict(class_names),
        "num_images": len(predictions),
        "context_leak": None if leak is None else leak.to_dict(class_names),
    }


def _context_of(context_maps: Mapping[str, Callable[[], np.ndarray]], image_id: str) -> np.ndarray:
    if image_id not in context_maps:
        raise KeyError(f"no context map for {image_id!r}")
    return context_maps[image_id]()


class ThresholdSweep:
    """One confusion matrix per CAM background threshold, accumulated over images.

    At threshold t a pixel is background when its highest CAM score is <= t, otherwise it takes
    the label of its arg-max class: the same as an arg-max over the CAMs with a constant channel
    t stacked first (ties go to background). The comparison is made in the CAMs' dtype, as that
    stacked channel would be. Images given with a context map also count, per threshold, the
    context pixels labelled as their owner (:meth:`context_leak`); pixels the ground truth
    ignores are not counted.
    """

    def __init__(
        self, thresholds: Sequence[float], num_classes: int, ignore_index: int = IGNORE_INDEX
    ) -> None:
        _check_num_classes(num_classes)
        self.thresholds = [float(t) for t in thresholds]
        if not self.thresholds:
            raise ValueError("thresholds must not be empty")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._order = np.argsort(self.thresholds, kind="stable")
        self._sorted = np.asarray(self.thresholds)[self._order]
        self._cms = np.zeros((len(self.thresholds), num_classes, num_classes), dtype=np.int64)
        self._context_pixels: np.ndarray | None = None
        self._leaked = np.zeros((len(self.thresholds), num_classes), dtype=np.int64)

    def _validate(self, cams: np.ndarray, class_indices: Sequence[int], gt: np.ndarray) -> None:
        _require_array("cams", cams)
        _require_labels("gt", gt)
        if cams.ndim != 3 or not np.issubdtype(cams.dtype, np.floating):
            raise ValueError(f"cams must be a float C x H x W array, got {cams.dtype} {cams.shape}")
        if cams.shape[1:] != gt.shape:
            raise ValueError(f"cams spatial shape {cams.shape[1:]} != gt shape {gt.shape}")
        if len(class_indices) != cams.shape[0]:
            raise ValueError(f"{len(class_indices)} class indices for {cams.shape[0]} CAMs")
        bad = [k for k in class_indices if not 1 <= k < self.num_classes]
        if bad:
            raise ValueError(f"class indices outside [1, {self.num_classes}): {bad}")
        if not np.isfinite(cams).all():
            raise ValueError("cams contain NaN or infinite values")

    def add(
        self,
        cams: np.ndarray,
        class_indices: Sequence[int],
        gt: np.ndarray,
        context: np.ndarray | None = None,
    ) -> None:
        """Score one image's CAMs (C x H x W, at gt resolution) of the classes it contains, and
        its context map when given.

        Each pixel's max and arg-max are taken once. Sorting the thresholds turns "foreground at
        threshold j" into "j < number of thresholds below the pixel's max", so one bincount over
        (that count, gt, label) gives every threshold's matrix by cumulative sums.
        """
        self._validate(cams, class_indices, gt)
        n, num_thresholds = self.num_classes, len(self.thresholds)
        scored, gt_labels = _scored_gt(gt, n, self.ignore_index)
        owners = None
        if context is not None:
            owners = scored_context(context, gt, self.ignore_index)[scored].astype(np.int64)
            _check_label_range("context", owners, n)
            self._count_context(owners)
        if cams.shape[0] == 0:
            self._cms[:, :, 0] += np.bincount(gt_labels, minlength=n)
            return
        labels = np.asarray(class_indices, dtype=np.int64)[cams.argmax(axis=0)[scored]]
        max_score = cams.max(axis=0)[scored]
        # thresholds below each pixel's max: the pixel is foreground at sorted thresholds [0, below)
        below = np.searchsorted(self._sorted.astype(cams.dtype), max_score, side="left")
        fg = np.bincount(
            (below * n + gt_labels) * n + labels, minlength=(num_thresholds + 1) * n * n
        ).reshape(num_thresholds + 1, n, n)
        bg = np.bincount(below * n + gt_labels, minlength=(num_thresholds + 1) * n).reshape(
            num_thresholds + 1, n
        )
        cms = np.cumsum(fg[::-1], axis=0)[::-1][1:]  # sorted threshold j: pixels with below > j
        cms[:, :, 0] += np.cumsum(bg, axis=0)[:-1]  # and background where below <= j
        self._cms[self._order] += cms
        if owners is not None:
            self._count_leaks(owners, labels, below)

    def _count_context(self, owners: np.ndarray) -> None:
        counts = np.bincount(owners, minlength=self.num_classes)
        if self._context_pixels is not None:
            counts += self._context_pixels
        self._context_pixels = counts

    def _count_leaks(self, owners: np.ndarray, labels: np.ndarray, below: np.ndarray) -> None:
        """Context pixels labelled as their owner, per threshold, by the same cumulative sum as
        the confusion matrices (a context pixel has owner >= 1, so a match is foreground)."""
        n, num_thresholds = self.num_classes, len(self.thresholds)
        hit = labels == owners
        counts = np.bincount(
            below[hit] * n + owners[hit], minlength=(num_thresholds + 1) * n
        ).reshape(num_thresholds + 1, n)
        self._leaked[self._order] += np.cumsum(counts[::-1], axis=0)[::-1][1:]

    def context_leak(self, threshold: float) -> ContextLeak | None:
        """The context leak at one of the thresholds; None when no image had a context map."""
        if self._context_pixels is None:
            return None
        leak = ContextLeak(self.num_classes)
        leak.add_counts(self._context_pixels, self._leaked[self.thresholds.index(threshold)])
        return leak

    def results(self) -> list[tuple[float, SegmentationScores]]:
        """Scores per threshold, in the order the thresholds were given."""
        return [(t, iou_from_confusion(cm)) for t, cm in zip(self.thresholds, self._cms)]

    def best(self) -> tuple[float, SegmentationScores]:
        """The threshold with the highest mIoU (the first one on ties; NaN counts as lowest)."""
        results = self.results()
        mious = np.array([scores.miou for _, scores in results])
        return results[int(np.argmax(np.nan_to_num(mious, nan=-np.inf)))]
