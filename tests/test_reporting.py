"""Tests of semples.reporting: the comparison table of versioned reports and its Markdown."""

import math

import pandas as pd
import pytest

from semples.reporting import (
    FIXED_COLUMNS,
    ReportSpec,
    comparison_table,
    per_class_frame,
    table_to_markdown,
    with_changed_params_only,
)

OLD, NEW = "2026-11-25T08.01.02.345Z", "2026-11-26T08.01.02.345Z"
NEWEST = "2026-11-26T09.00.00.000Z"

SPECS = {
    "cam_metrics": ReportSpec(headline="miou", per_class="per_class_iou"),
    "ingestion_report": ReportSpec(headline="num_images", per_class="class_frequency"),
    "never_run": ReportSpec(headline="miou", per_class="per_class_iou"),
}


def cam_report(miou, per_class, **params):
    return {
        "miou": miou,
        "per_class_iou": per_class,
        "split": "val",
        "num_images": 10,
        "params": params,
    }


HISTORY = {
    # given out of order: the table sorts by version
    "cam_metrics": {
        NEWEST: cam_report(0.55, {"background": 0.9, "cat": 0.2}, cam={"layer": "last"}),
        OLD: cam_report(0.4, {"background": 0.8, "cat": None}, cam={"thresholds": [0.1, 0.2]}),
        NEW: cam_report(0.5, {"background": 0.85, "dog": 0.3}, cam={"layer": "a|b"}, seed=3),
    },
    "ingestion_report": {OLD: {"num_images": 1464, "class_frequency": {"cat": 3}}},
    "unspecified": {OLD: {"whatever": 1}},
}


def test_comparison_table_rows_values_and_deltas():
    table = comparison_table(HISTORY, SPECS)
    assert list(table.columns) == [
        *FIXED_COLUMNS,
        "params.cam.layer",
        "params.cam.thresholds",
        "params.seed",
    ]
    assert list(zip(table["report"], table["run"])) == [
        ("cam_metrics", OLD),
        ("cam_metrics", NEW),
        ("cam_metrics", NEWEST),
        ("ingestion_report", OLD),
    ]
    assert list(table["metric"]) == ["miou"] * 3 + ["num_images"]
    assert list(table["value"]) == [0.4, 0.5, 0.55, 1464.0]
    deltas = table["delta"].tolist()
    assert math.isnan(deltas[0]) and math.isnan(deltas[3])  # first run of each report
    assert deltas[1:3] == pytest.approx([0.1, 0.05])
    assert table["split"].tolist()[:3] == ["val"] * 3 and pd.isna(table["split"].iloc[3])
    assert table["num_images"].tolist() == [10, 10, 10, 1464]


def test_comparison_table_flattens_parameters():
    table = comparison_table(HISTORY, SPECS).set_index("run")
    assert table.loc[OLD, "params.cam.thresholds"].iloc[0] == "[0.1, 0.2]"
    assert table.loc[NEW, "params.cam.layer"] == "a|b"
    assert table.loc[NEW, "params.seed"] == 3
    assert pd.isna(table.loc[NEWEST, "params.seed"])


def test_comparison_table_undefined_headline_and_absent_fields_are_nan():
    history = {"cam_metrics": {OLD: cam_report(None, {}), NEW: {"miou": 0.5}}}
    table = comparison_table(history, SPECS)
    assert table["value"].isna().tolist() == [True, False]
    assert table["delta"].isna().all()
    assert table["split"].isna().tolist() == [False, True]
    assert table["num_images"].isna().tolist() == [False, True]


def test_comparison_table_missing_headline_names_report_and_run():
    history = {"cam_metrics": {OLD: {"per_class_iou": {}}}}
    with pytest.raises(ValueError, match=f"report 'cam_metrics' of run '{OLD}' has no key 'miou'"):
        comparison_table(history, SPECS)


def test_empty_history_gives_the_fixed_columns():
    table = comparison_table({}, SPECS)
    assert table.empty and list(table.columns) == FIXED_COLUMNS


def test_per_class_frame_latest_runs():
    frame = per_class_frame(HISTORY, SPECS, "cam_metrics")
    assert list(frame.columns) == [NEW, NEWEST]
    assert list(frame.index) == ["background", "dog", "cat"]
    assert frame.loc["background", NEWEST] == 0.9
    assert pd.isna(frame.loc["dog", NEWEST])
    everything = per_class_frame(HISTORY, SPECS, "cam_metrics", last=5)
    assert list(everything.columns) == [OLD, NEW, NEWEST]
    assert pd.isna(everything.loc["cat", OLD])  # JSON null


def test_per_class_frame_edge_cases():
    assert per_class_frame(HISTORY, SPECS, "never_run").empty
    with pytest.raises(ValueError, match="no ReportSpec for report 'unspecified'"):
        per_class_frame(HISTORY, SPECS, "unspecified")
    with pytest.raises(ValueError, match="last must be at least 1"):
        per_class_frame(HISTORY, SPECS, "cam_metrics", last=0)
    with pytest.raises(ValueError, match="has no key 'class_frequency'"):
        per_class_frame({"ingestion_report": {OLD: {"num_images": 3}}}, SPECS, "ingestion_report")


def test_table_to_markdown():
    df = pd.DataFrame(
        {
            "run": ["a", "b|c"],
            "value": [0.5, math.nan],
            "num_images": [1464.0, math.nan],
            "split": ["val", None],
        }
    )
    assert table_to_markdown(df, float_format="{:.2f}") == (
        "| run | value | num_images | split |\n"
        "| --- | ---: | ---: | --- |\n"
        "| a | 0.50 | 1464 | val |\n"
        "| b\\|c |  |  |  |\n"
    )


def test_table_to_markdown_of_the_comparison_table():
    markdown = table_to_markdown(comparison_table(HISTORY, SPECS))
    lines = markdown.splitlines()
    assert len(lines) == 2 + 4
    assert lines[0].startswith("| report | run | metric | value | delta |")
    assert f"| cam_metrics | {NEW} | miou | 0.5000 | 0.1000 | val | 10 | a\\|b |" in lines[3]
    assert table_to_markdown(comparison_table({}, SPECS)).count("\n") == 2


def test_with_changed_params_only_keeps_what_tells_runs_apart():
    table = pd.DataFrame(
        {
            "report": ["cam_metrics"] * 3,
            "value": [0.4, 0.5, 0.45],
            "params.seed": [0, 1, 2],
            "params.lambda": [2.0, 2.0, 2.0],
            "params.note": [None, None, "x"],
        }
    )
    assert list(with_changed_params_only(table).columns) == [
        "report", "value", "params.seed", "params.note",
    ]  # fmt: skip
