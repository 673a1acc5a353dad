"""mIoU through MMSegmentation's IoUMetric, per class by name, and the segmentation report."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from semples.metrics import evaluate_label_maps
from semples.parameters import parse_section
from semples.segmentation.evaluation import iou_metric_report, segmentation_report

CONF = Path(__file__).resolve().parents[2] / "conf"

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


def test_segmentation_report_scores_the_pseudo_masks_where_they_exist():
    params = yaml.safe_load((CONF / "base/parameters_segmentation.yml").read_text())["segmentation"]
    params["backbone_weights"] = None  # the runtime parameter, unset
    truth = {"a": np.array([[0, 1], [2, 0]], np.uint8), "b": np.array([[1, 1], [0, 0]], np.uint8)}
    predictions = {"a": truth["a"], "b": np.zeros((2, 2), np.uint8)}
    pseudo = {"a": np.array([[0, 1], [0, 0]], np.uint8)}  # none for "b"
    history = pd.DataFrame({"val_miou": [None, 0.25, None, 0.5, None]})
    deeplab = {"pseudo_masks_version": "v1", "iterations": 7}
    run = parse_section("segmentation", params)
    report = segmentation_report(
        _loaders(predictions), _loaders(pseudo), deeplab, history, _loaders(truth), NAMES, run
    )
    alone = iou_metric_report(_loaders(predictions), _loaders(truth), NAMES)
    assert {key: report[key] for key in alone} == alone
    expected_pseudo = iou_metric_report(_loaders(pseudo), _loaders({"a": truth["a"]}), NAMES)
    assert (
        report["pseudo_mask_miou"] == expected_pseudo["miou"] and report["pseudo_mask_images"] == 1
    )
    assert report["single_scale_miou"] == 0.5 and report["iterations"] == 7
    assert report["pseudo_masks_version"] == "v1" and report["split"] == params["val_split"]
    assert report["params"] == run.model_dump(mode="json")
    json.dumps(report)
