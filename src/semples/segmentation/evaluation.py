"""mIoU of saved label maps with MMSegmentation's ``IoUMetric``.

The metric accumulates per-image areas as in MMSegmentation's own validation; its summary holds
only the mean, so per-class IoU (by class name) comes from the same accumulated areas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from mmseg.evaluation import IoUMetric

from semples.metrics import json_float, nanmean

LabelLoaders = Mapping[str, Callable[[], np.ndarray]]


def iou_metric_report(
    predictions: LabelLoaders, ground_truth: LabelLoaders, class_names: Sequence[str]
) -> dict:
    """``miou``, ``per_class_iou``, ``pixel_accuracy`` and ``num_images`` over the ids of
    ``ground_truth`` (fractions; a class absent from both prediction and truth is None and left
    out of the mean, as in MMSegmentation). Missing predictions and size mismatches name the id."""
    missing = sorted(set(ground_truth) - set(predictions))
    if missing:
        raise KeyError(f"{len(missing)} image(s) have no prediction, e.g. {missing[:3]}")
    if not ground_truth:
        raise ValueError("no image to evaluate")
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": tuple(class_names)}
    for item_id, load_truth in ground_truth.items():
        prediction, truth = np.asarray(predictions[item_id]()), np.asarray(load_truth())
        if prediction.shape != truth.shape:
            raise ValueError(
                f"image {item_id!r}: prediction {prediction.shape} and ground truth "
                f"{truth.shape} differ in size"
            )
        sample = dict(
            pred_sem_seg=dict(data=torch.from_numpy(prediction.astype(np.int64))[None]),
            gt_sem_seg=dict(data=torch.from_numpy(truth.astype(np.int64))[None]),
        )
        metric.process({}, [sample])
    areas = [sum(column) for column in zip(*metric.results)]
    scores = IoUMetric.total_area_to_metrics(*areas, ["mIoU"])
    iou = np.asarray(scores["IoU"], dtype=np.float64)
    return {
        "miou": json_float(nanmean(iou)),
        "per_class_iou": {name: json_float(v) for name, v in zip(class_names, iou, strict=True)},
        "pixel_accuracy": json_float(float(scores["aAcc"])),
        "num_images": len(ground_truth),
    }
