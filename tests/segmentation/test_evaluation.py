"""mIoU through MMSegmentation's IoUMetric, per class by name."""

import numpy as np
import pytest

from semples.metrics import evaluate_label_maps
from semples.segmentation.evaluation import iou_metric_report

NAMES = ["background", "cat", "dog", "bird"]


def _loaders(arrays):
    return {key: (lambda a=a: a) for key, a in arrays.items()}


def test_agrees_with_the_projects_confusion_matrix_metric():
    rng = np.random.default_rng(0)
    truth = {f"i{k}": rng.integers(0, 3, (8, 9)).astype(np.uint8) for k in range(4)}
    truth["i0"][0, :3] = 255
    preds = {k: np.where(rng.random(v.shape) < 0.7, v % 255, rng.integers(0, 3, v.shape))
             for k, v in truth.items()}  # fmt: skip
    report = iou_metric_report(_loaders(preds), _loaders(truth), NAMES)
    reference = evaluate_label_maps(_loaders(preds), _loaders(truth), NAMES)
    assert report["miou"] == pytest.approx(reference["miou"])
    for name in NAMES[:3]:
        assert report["per_class_iou"][name] == pytest.approx(reference["per_class_iou"][name])
    assert report["per_class_iou"]["bird"] is None  # in neither: left out of the mean
    assert report["num_images"] == 4 and 0 < report["pixel_accuracy"] <= 1


def test_perfect_predictions_score_one():
    truth = {"a": np.array([[0, 1], [2, 255]], np.uint8)}
    report = iou_metric_report(_loaders({"a": np.array([[0, 1], [2, 0]])}), _loaders(truth), NAMES)
    assert report["miou"] == pytest.approx(1.0)


def test_missing_predictions_and_size_mismatches_name_the_image():
    truth = _loaders({"a": np.zeros((2, 2), np.uint8), "b": np.zeros((2, 2), np.uint8)})
    with pytest.raises(KeyError, match="'b'"):
        iou_metric_report(_loaders({"a": np.zeros((2, 2))}), truth, NAMES)
    with pytest.raises(ValueError, match="image 'a'.*differ in size"):
        iou_metric_report(_loaders({"a": np.zeros((2, 3)), "b": np.zeros((2, 2))}), truth, NAMES)
