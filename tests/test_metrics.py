"""Tests of semples.metrics: hand-computed cases, validation, the threshold sweep against a naive
arg-max, and agreement with MMSegmentation's IoUMetric."""

import json

import numpy as np
import pytest
import torch

from semples.metrics import (
    ContextLeak,
    ThresholdSweep,
    confusion_matrix,
    evaluate_label_maps,
    iou_from_confusion,
)

NAN = float("nan")

# 2 x 3 case, 3 classes; one gt pixel ignored.
PRED = np.array([[0, 1, 1], [2, 2, 0]], dtype=np.uint8)
GT = np.array([[0, 1, 2], [2, 255, 0]], dtype=np.uint8)
# rows gt, columns pred: gt0 -> pred 0,0; gt1 -> pred 1; gt2 -> pred 1,2
EXPECTED_CM = np.array([[2, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_confusion_matrix_hand_computed_case():
    cm = confusion_matrix(PRED, GT, num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, EXPECTED_CM)


def test_ignored_pixels_are_skipped_whatever_their_prediction():
    cm = confusion_matrix(PRED, np.full_like(GT, 255), num_classes=3)
    assert cm.sum() == 0
    custom = confusion_matrix(PRED, np.where(GT == 255, 7, GT), num_classes=3, ignore_index=7)
    np.testing.assert_array_equal(custom, EXPECTED_CM)


def test_scores_hand_computed_case():
    scores = iou_from_confusion(EXPECTED_CM)
    # class 0: tp 2, union 2; class 1: tp 1, gt 1 + pred 2 - 1 = 2; class 2: tp 1, 2 + 1 - 1 = 2
    np.testing.assert_allclose(scores.iou, [1.0, 0.5, 0.5])
    assert scores.miou == pytest.approx(2 / 3)
    np.testing.assert_allclose(scores.precision, [1.0, 0.5, 1.0])
    np.testing.assert_allclose(scores.recall, [1.0, 1.0, 0.5])
    assert scores.pixel_accuracy == pytest.approx(4 / 5)


def test_class_absent_from_both_is_nan_and_left_out_of_the_mean():
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:3, :3] = EXPECTED_CM
    cm[1, 3] = 1  # class 3 predicted once, never in gt: IoU 0, counted in the mean
    scores = iou_from_confusion(cm)
    np.testing.assert_allclose(scores.iou, [1.0, 1 / 3, 0.5, 0.0])
    assert scores.miou == pytest.approx((1 + 1 / 3 + 0.5 + 0) / 4)
    assert np.isnan(scores.recall[3]) and scores.precision[3] == 0.0

    cm[1, 3] = 0  # class 3 now absent from both
    scores = iou_from_confusion(cm)
    assert np.isnan(scores.iou[3]) and np.isnan(scores.precision[3])
    assert scores.miou == pytest.approx(2 / 3)


def test_empty_confusion_matrix_gives_nan_without_warnings():
    with np.errstate(all="raise"):
        scores = iou_from_confusion(np.zeros((2, 2), dtype=np.int64))
    assert np.isnan(scores.miou) and np.isnan(scores.pixel_accuracy)


def test_to_dict_is_json_ready_with_none_for_nan():
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:3, :3] = EXPECTED_CM
    report = iou_from_confusion(cm).to_dict(["background", "cat", "dog", "cow"])
    json.dumps(report, allow_nan=False)
    assert report["miou"] == pytest.approx(2 / 3)
    assert report["per_class_iou"] == {"background": 1.0, "cat": 0.5, "dog": 0.5, "cow": None}
    assert report["per_class_precision"]["dog"] == 1.0
    assert report["per_class_recall"]["dog"] == 0.5
    assert report["pixel_accuracy"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        iou_from_confusion(cm).to_dict(["background", "cat", "dog"])


def test_accumulating_two_images_equals_one_call_on_their_concatenation():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 5, (4, 6)) for _ in range(2)]
    gts = [np.where(rng.random((4, 6)) < 0.2, 255, rng.integers(0, 5, (4, 6))) for _ in range(2)]
    out = np.zeros((5, 5), dtype=np.int64)
    returned = confusion_matrix(preds[0], gts[0], 5, out=out)
    confusion_matrix(preds[1], gts[1], 5, out=out)
    assert returned is out
    whole = confusion_matrix(np.concatenate(preds), np.concatenate(gts), 5)
    np.testing.assert_array_equal(out, whole)


@pytest.mark.parametrize(
    ("pred", "gt", "kwargs", "message"),
    [
        (PRED[:, :2], GT, {}, r"pred shape \(2, 2\) != gt shape \(2, 3\)"),
        (PRED + 2, GT, {}, r"pred values outside \[0, 3\): \[3, 4\]"),
        (PRED, np.where(GT == 1, 9, GT), {}, r"gt .*values outside \[0, 3\): \[9\]"),
        (PRED, GT, {"out": np.zeros((3, 3), dtype=np.int32)}, "out must be int64 of shape"),
        (PRED, GT, {"out": np.zeros((2, 2), dtype=np.int64)}, r"got int64 of shape \(2, 2\)"),
    ],
)
def test_confusion_matrix_errors(pred, gt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(pred, gt, num_classes=3, **kwargs)


def test_confusion_matrix_rejects_tensors_and_float_masks():
    with pytest.raises(TypeError, match="pred must be a numpy array, got Tensor"):
        confusion_matrix(torch.tensor(PRED), GT, num_classes=3)
    with pytest.raises(TypeError, match="gt must hold integer labels"):
        confusion_matrix(PRED, GT.astype(np.float32), num_classes=3)


def naive_sweep_prediction(cams, class_indices, threshold):
    """Reference: stack a constant background channel first, arg-max, map to label values."""
    background = np.full((1, *cams.shape[1:]), threshold, dtype=cams.dtype)
    stacked = np.concatenate([background, cams])
    return np.concatenate([[0], class_indices]).astype(np.int64)[stacked.argmax(axis=0)]


def random_image(rng, num_classes, shape=(12, 9), num_present=2, dtype=np.float32):
    """CAMs on a coarse grid of values so that ties with the thresholds occur."""
    present = rng.choice(np.arange(1, num_classes), size=num_present, replace=False)
    cams = (rng.integers(0, 11, (num_present, *shape)) / 10).astype(dtype)
    gt = rng.integers(0, num_classes, shape)
    gt[rng.random(shape) < 0.15] = 255
    return cams, present.tolist(), gt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_sweep_equals_naive_argmax_including_ties(dtype):
    rng = np.random.default_rng(1)
    num_classes = 6
    thresholds = [0.5, 0.0, 0.3, 1.0, 0.3, 0.75]  # unsorted, duplicated, tying with CAM values
    sweep = ThresholdSweep(thresholds, num_classes)
    expected = np.zeros((len(thresholds), num_classes, num_classes), dtype=np.int64)
    for num_present in [1, 2, 3, 0]:
        cams, present, gt = random_image(rng, num_classes, num_present=num_present, dtype=dtype)
        sweep.add(cams, present, gt)
        for i, t in enumerate(thresholds):
            pred = naive_sweep_prediction(cams, present, t)
            confusion_matrix(pred, gt, num_classes, out=expected[i])
    results = sweep.results()
    assert [t for t, _ in results] == thresholds
    for (_, scores), cm in zip(results, expected):
        reference = iou_from_confusion(cm)
        np.testing.assert_array_equal(scores.iou, reference.iou)
        assert scores.miou == reference.miou or np.isnan(reference.miou)


def test_threshold_sweep_without_classes_predicts_background():
    sweep = ThresholdSweep([0.2, 0.8], num_classes=3)
    gt = np.array([[0, 1, 255], [2, 0, 0]])
    sweep.add(np.zeros((0, 2, 3), dtype=np.float32), [], gt)
    for _, scores in sweep.results():
        np.testing.assert_allclose(scores.iou, [3 / 5, 0.0, 0.0])


def test_threshold_sweep_best_is_highest_miou_first_on_ties():
    gt = np.array([[0, 1, 1, 0]])
    cams = np.array([[[0.1, 0.6, 0.9, 0.2]]], dtype=np.float32)
    sweep = ThresholdSweep([0.95, 0.3, 0.4, 0.05], num_classes=2)
    sweep.add(cams, [1], gt)
    threshold, scores = sweep.best()
    assert threshold == 0.3 and scores.miou == 1.0  # 0.4 ties at mIoU 1 but comes later


@pytest.mark.parametrize(
    ("cams", "class_indices", "gt", "message"),
    [
        (np.zeros((1, 2, 3)), [1], np.zeros((3, 2), int), r"cams spatial shape \(2, 3\) != gt"),
        (np.zeros((2, 2, 3)), [1], np.zeros((2, 3), int), "1 class indices for 2 CAMs"),
        (np.zeros((1, 2, 3)), [3], np.zeros((2, 3), int), r"class indices outside \[1, 3\)"),
        (np.zeros((2, 3)), [], np.zeros((2, 3), int), "float C x H x W"),
        (np.full((1, 2, 3), np.nan), [1], np.zeros((2, 3), int), "NaN or infinite"),
        (np.zeros((1, 2, 3)), [1], np.full((2, 3), 4), r"gt .*outside \[0, 3\): \[4\]"),
    ],
)
def test_threshold_sweep_errors(cams, class_indices, gt, message):
    with pytest.raises(ValueError, match=message):
        ThresholdSweep([0.5], num_classes=3).add(cams, class_indices, gt)


def test_context_leak_hand_computed_case():
    # owners: class 1's context on 3 pixels, class 2's on 2, one pixel ignored by the gt below
    context = np.array([[1, 1, 1, 0], [2, 2, 0, 0]], dtype=np.uint8)
    pred = np.array([[1, 0, 1, 1], [1, 0, 2, 2]], dtype=np.uint8)
    leak = ContextLeak(num_classes=4)
    leak.add(pred, context)
    assert leak.to_dict(["background", "cat", "dog", "cow"]) == {
        "overall": pytest.approx(2 / 5),  # class 1: 2 of 3 leak; class 2: 0 of 2 (pred 1, 0)
        "per_class": {"cat": pytest.approx(2 / 3), "dog": 0.0, "cow": None},
    }
    leak.add(np.array([[2]]), np.array([[2]]))  # accumulates over images
    assert leak.to_dict(["background", "cat", "dog", "cow"])["per_class"]["dog"] == 1 / 3


def test_context_leak_without_context_pixels_is_null():
    leak = ContextLeak(num_classes=2)
    leak.add(np.ones((2, 2), int), np.zeros((2, 2), int))
    assert leak.to_dict(["background", "cat"]) == {"overall": None, "per_class": {"cat": None}}


def test_context_leak_errors():
    leak = ContextLeak(num_classes=3)
    with pytest.raises(ValueError, match=r"pred shape \(1, 2\) != context shape \(2, 1\)"):
        leak.add(np.zeros((1, 2), int), np.zeros((2, 1), int))
    with pytest.raises(ValueError, match=r"context values outside \[0, 3\): \[7\]"):
        leak.add(np.zeros((1, 2), int), np.array([[0, 7]]))
    with pytest.raises(TypeError, match="context must hold integer labels"):
        leak.add(np.zeros((1, 2), int), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        leak.to_dict(["background", "cat"])


def test_threshold_sweep_context_leak_equals_naive_argmax_per_threshold():
    rng = np.random.default_rng(3)
    num_classes, thresholds = 5, [0.5, 0.0, 0.3, 1.0, 0.3]
    names = ["background", "a", "b", "c", "d"]
    sweep = ThresholdSweep(thresholds, num_classes)
    expected = [ContextLeak(num_classes) for _ in thresholds]
    for num_present in [2, 3, 0]:
        cams, present, gt = random_image(rng, num_classes, num_present=num_present)
        context = np.where(rng.random(gt.shape) < 0.5, rng.integers(1, num_classes, gt.shape), 0)
        sweep.add(cams, present, gt, context)
        for leak, t in zip(expected, thresholds):
            scored = gt != 255
            leak.add(naive_sweep_prediction(cams, present, t)[scored], context[scored])
    for leak, t in zip(expected, thresholds):
        assert sweep.context_leak(t).to_dict(names) == leak.to_dict(names)
    assert ThresholdSweep([0.5], 3).context_leak(0.5) is None  # no context map given


def test_threshold_sweep_context_map_errors():
    sweep = ThresholdSweep([0.5], num_classes=3)
    cams, gt = np.zeros((1, 2, 3), np.float32), np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=r"context shape \(3, 2\) != gt shape \(2, 3\)"):
        sweep.add(cams, [1], gt, np.zeros((3, 2), int))
    with pytest.raises(ValueError, match=r"context values outside \[0, 3\)"):
        sweep.add(cams, [1], gt, np.full((2, 3), 3))


def test_threshold_sweep_needs_thresholds():
    with pytest.raises(ValueError, match="thresholds must not be empty"):
        ThresholdSweep([], num_classes=3)


def test_equal_to_mmsegmentation_iou_metric():
    from mmseg.evaluation import IoUMetric

    rng = np.random.default_rng(2)
    names = ("background", "aeroplane", "bicycle", "bird", "boat")
    num_classes = len(names)
    images = []
    for shape in [(7, 11), (16, 5), (9, 9)]:
        pred = rng.choice([0, 1, 2, 4], size=shape)  # class 3 is absent from both
        gt = rng.choice([0, 1, 2, 4], size=shape)
        gt[rng.random(shape) < 0.2] = 255
        images.append((pred.astype(np.int64), gt.astype(np.int64)))

    metric = IoUMetric(ignore_index=255)
    metric.dataset_meta = {"classes": names}
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, gt in images:
        sample = {
            "pred_sem_seg": {"data": torch.tensor(pred[None])},
            "gt_sem_seg": {"data": torch.tensor(gt[None])},
        }
        metric.process({}, [sample])
        confusion_matrix(pred, gt, num_classes, out=cm)
    ours = iou_from_confusion(cm)

    # Areas: mmseg's per-image histograms summed equal our matrix's diagonal / margins exactly.
    intersect, union, pred_area, gt_area = (sum(area) for area in zip(*metric.results))
    np.testing.assert_array_equal(intersect.numpy(), np.diag(cm))
    np.testing.assert_array_equal(pred_area.numpy(), cm.sum(axis=0))
    np.testing.assert_array_equal(gt_area.numpy(), cm.sum(axis=1))
    np.testing.assert_array_equal(union.numpy(), cm.sum(0) + cm.sum(1) - np.diag(cm))

    # Scores: mmseg's formulas on the same (float64) areas give bit-identical values.
    areas = [a.to(torch.float64) for a in (intersect, union, pred_area, gt_area)]
    reference = IoUMetric.total_area_to_metrics(*areas, metrics=["mIoU", "mFscore"])
    assert np.isnan(reference["IoU"][3]) and np.isnan(ours.iou[3])
    np.testing.assert_array_equal(ours.iou, reference["IoU"])
    np.testing.assert_array_equal(ours.precision, reference["Precision"])
    np.testing.assert_array_equal(ours.recall, reference["Recall"])
    assert ours.miou == np.nanmean(reference["IoU"])
    assert ours.pixel_accuracy == reference["aAcc"]

    # mmseg's summary: float32 percentages rounded to 2 decimals, the same 2-decimal numbers.
    summary = metric.compute_metrics(metric.results)
    assert summary["mIoU"] == pytest.approx(np.round(ours.miou * 100, 2), abs=1e-4)
    assert summary["aAcc"] == pytest.approx(np.round(ours.pixel_accuracy * 100, 2), abs=1e-4)


def test_evaluate_label_maps_streams_one_confusion_matrix():
    pred = {"a": lambda: np.array([[0, 1], [1, 1]]), "b": lambda: np.array([[2, 2]])}
    gt = {"a": lambda: np.array([[0, 1], [255, 0]]), "b": lambda: np.array([[2, 1]])}
    report = evaluate_label_maps(pred, gt, ["background", "cat", "dog"])
    expected = iou_from_confusion(
        confusion_matrix(np.array([0, 1, 1, 2, 2]), np.array([0, 1, 0, 2, 1]), 3)
    ).to_dict(["background", "cat", "dog"])
    assert report == {**expected, "num_images": 2, "context_leak": None}


def test_evaluate_label_maps_context_leak():
    pred = {"a": lambda: np.array([[1, 1], [0, 2]]), "b": lambda: np.array([[2, 0]])}
    gt = {"a": lambda: np.array([[1, 0], [255, 0]]), "b": lambda: np.array([[2, 0]])}
    context = {"a": lambda: np.array([[0, 1], [1, 2]]), "b": lambda: np.array([[0, 2]])}
    report = evaluate_label_maps(pred, gt, ["background", "cat", "dog"], context)
    # cat: 1 context pixel scored (the other is ignored), leaked; dog: 2, one leaked
    assert report["context_leak"] == {
        "overall": pytest.approx(2 / 3),
        "per_class": {"cat": 1.0, "dog": 0.5},
    }
    with pytest.raises(KeyError, match="no context map for 'b'"):
        evaluate_label_maps(pred, gt, ["background", "cat", "dog"], {"a": context["a"]})
    with pytest.raises(ValueError, match="'a': context shape"):
        evaluate_label_maps(pred, gt, ["background", "cat", "dog"], {
            "a": lambda: np.zeros((1, 2), int), "b": context["b"]})  # fmt: skip


def test_evaluate_label_maps_names_the_image_at_fault():
    with pytest.raises(KeyError, match="no ground-truth mask for 'a'"):
        evaluate_label_maps({"a": lambda: np.zeros((1, 1), int)}, {}, ["background"])
    with pytest.raises(ValueError, match="'a': pred shape"):
        evaluate_label_maps(
            {"a": lambda: np.zeros((1, 2), int)}, {"a": lambda: np.zeros((2, 1), int)}, ["bg"]
        )
    with pytest.raises(ValueError, match="no label maps to evaluate"):
        evaluate_label_maps({}, {}, ["background"])
