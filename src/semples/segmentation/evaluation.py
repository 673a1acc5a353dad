"""mIoU of saved label maps with MMSegmentation's ``IoUMetric``, and the segmentation report.

The metric accumulates per-image areas as in MMSegmentation's own validation; its summary holds
only the mean, so per-class IoU (by class name) comes from the same accumulated areas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from mmseg.evaluation import IoUMetric

from semples.metrics import json_float, nanmean
from semples.parameters import Segmentation

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


def segmentation_report(
    predictions: LabelLoaders,
    pseudo_masks: LabelLoaders,
    deeplab: Mapping[str, Any],
    history: pd.DataFrame,
    ground_truth: LabelLoaders,
    class_names: Sequence[str],
    run: Segmentation,
) -> dict[str, Any]:
    """The segmentation report (``segmentation_metrics.json``): the predictions over
    ``ground_truth`` (``class_names`` with background first), the pseudo masks DeepLab trained on
    scored on the same images where they exist, the last single-scale validation mIoU of
    ``history``, and the run's parameters (the ``segmentation`` section)."""
    report = iou_metric_report(predictions, ground_truth, class_names)
    validated = history["val_miou"].dropna() if "val_miou" in history else pd.Series(dtype=float)
    covered = {i: load for i, load in ground_truth.items() if i in pseudo_masks}
    pseudo = iou_metric_report(pseudo_masks, covered, class_names) if covered else {}
    report.update(
        split=run.val_split,
        test=run.test.model_dump(mode="json"),
        single_scale_miou=float(validated.iloc[-1]) if len(validated) else None,
        pseudo_mask_miou=pseudo.get("miou"),
        pseudo_mask_images=len(covered),
        pseudo_masks_version=deeplab["pseudo_masks_version"],
        iterations=deeplab["iterations"],
        params=run.model_dump(mode="json"),
    )
    return report
