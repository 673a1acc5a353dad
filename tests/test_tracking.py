"""Reports and loss histories become flat MLflow metrics with names a user can find."""

import math

import pandas as pd
import pytest

from semples.tracking import history_metrics, metric_name, report_metrics

REPORT = {
    "miou": 0.5,
    "best_threshold": 0.3,
    "per_class_iou": {"background": 0.8, "aeroplane": 0.2},
    "context_leak": {"overall": 0.1, "per_class": {"aeroplane": 0.3, "sheep": None}},
    "stages": {"stage1": {"miou": 0.4, "skipped": False, "scales": [1.0]}},
    "sweep": [{"threshold": 0.3, "miou": 0.5}],
    "params": {"seed": 1, "lr": 0.001},
    "split": "val",
    "num_images": 8,
    "trivial_miou": math.nan,
}


def test_every_finite_number_of_a_report_is_a_metric_under_its_path():
    assert report_metrics(REPORT, "cam_metrics") == {
        "cam_metrics/miou": 0.5,
        "cam_metrics/best_threshold": 0.3,
        "cam_metrics/iou/background": 0.8,
        "cam_metrics/iou/aeroplane": 0.2,
        "cam_metrics/context_leak/overall": 0.1,
        "cam_metrics/context_leak/per_class/aeroplane": 0.3,
        "cam_metrics/stages/stage1/miou": 0.4,
        "cam_metrics/num_images": 8.0,
    }  # no params, sweep, strings, lists, booleans, None or NaN


def test_names_mlflow_refuses_are_made_safe():
    assert metric_name("report", "iou", "potted plant (x)") == "report/iou/potted plant _x_"


def test_a_history_becomes_step_metrics_of_its_loss_columns():
    history = pd.DataFrame({
        "stage": [1, 1], "epoch": [0, 0], "step": [1, 2], "lr": [1e-3, 5e-4],
        "total": [2.0, math.nan], "note": ["a", "b"],
    })  # fmt: skip
    assert history_metrics(history, "stage1_loss_history") == [
        ("stage1_loss_history/lr", 1e-3, 1),
        ("stage1_loss_history/lr", 5e-4, 2),
        ("stage1_loss_history/total", 2.0, 1),
    ]


@pytest.mark.parametrize("columns", [{"iter": [50, 100]}, {}])
def test_a_history_without_step_counts_by_iter_or_row(columns):
    history = pd.DataFrame({**columns, "loss": [0.5, 0.25]})
    steps = [step for _, _, step in history_metrics(history, "h")]
    assert steps == (columns.get("iter") or [0, 1])
