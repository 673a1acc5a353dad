"""Tests of semples.reporting: the comparison table of versioned reports and its Markdown."""

import json
import math

import pandas as pd
import pytest

from semples.reporting import (
    FIXED_COLUMNS,
    ReportSpec,
    ablation_summary,
    ablation_table,
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
    assert lines[0].startswith("| report | run | status | metric | value | delta |")
    row = f"| cam_metrics | {NEW} | unrecorded | miou | 0.5000 | 0.1000 | val | 10 | a\\|b |"
    assert row in lines[3]
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


# --- extra columns and the ablation table ------------------------------------------------------

STAGE_SPECS = {
    "cam_metrics": ReportSpec(
        "miou",
        "per_class_iou",
        columns={"stage1_miou": "stages.stage1.miou", "context_leak": "context_leak.overall"},
    ),
    "pseudo_mask_metrics": ReportSpec(
        "miou", "per_class_iou", columns={"context_leak": "context_leak.overall"}
    ),
}


def stage_report(miou, stage1, leak=None, split="val", num_images=10, **params):
    return {
        "miou": miou,
        "stages": {"stage1": {"miou": stage1}},
        "context_leak": None if leak is None else {"overall": leak, "per_class": {}},
        "split": split,
        "num_images": num_images,
        "params": params,
    }


def version(i: int) -> str:
    return f"2026-11-26T08.00.{i:02d}.000Z"


def test_extra_columns_read_dotted_paths_and_are_nan_where_absent():
    history = {
        "cam_metrics": {
            version(0): stage_report(0.5, 0.4, leak=0.25, seed=0),
            version(1): {"miou": 0.3, "stages": {"stage1": None}},  # older or odd reports
        },
        "pseudo_mask_metrics": {version(2): stage_report(0.6, None, leak=0.1, seed=0)},
    }
    table = comparison_table(history, STAGE_SPECS)
    assert list(table.columns) == [*FIXED_COLUMNS, "stage1_miou", "context_leak", "params.seed"]
    assert table["stage1_miou"].tolist()[0] == 0.4 and table["stage1_miou"].isna().tolist()[1:] == [
        True,
        True,  # pseudo_mask_metrics has no such column
    ]
    assert table["context_leak"].tolist()[0] == 0.25 and math.isnan(table["context_leak"][1])
    assert table["context_leak"].tolist()[2] == 0.1
    empty = comparison_table({}, STAGE_SPECS)
    assert list(empty.columns) == [*FIXED_COLUMNS, "stage1_miou", "context_leak"]


ABLATION_HISTORY = {
    "cam_metrics": {
        # configuration A over three seeds, B over two
        version(0): stage_report(0.30, 0.20, 0.6, seed=0, ablation="all", lam=2.0),
        version(1): stage_report(0.40, 0.30, 0.4, seed=1, ablation="all", lam=2.0),
        version(2): stage_report(0.50, 0.40, 0.2, seed=2, ablation="all", lam=2.0),
        version(3): stage_report(0.20, 0.20, 0.5, seed=0, ablation="match_only", lam=2.0),
        version(4): stage_report(0.30, 0.30, 0.7, seed=1, ablation="match_only", lam=2.0),
        # A's parameters, but another image count, another split, or a parameter the others lack
        version(5): stage_report(0.90, 0.90, 0.1, seed=0, ablation="all", lam=2.0, num_images=3),
        version(6): stage_report(0.80, 0.80, 0.1, seed=0, ablation="all", lam=2.0, split="train"),
        version(7): stage_report(0.70, 0.70, 0.1, seed=0, ablation="all", lam=2.0, extra=1),
    },
    "pseudo_mask_metrics": {version(8): stage_report(0.6, None, 0.3, seed=4, ablation="all")},
}


def test_ablation_table_groups_by_every_parameter_but_the_seed():
    table = comparison_table(ABLATION_HISTORY, STAGE_SPECS)
    ablation = ablation_table(table)
    cam = ablation[ablation["report"] == "cam_metrics"].set_index("configuration")
    assert cam["n"].tolist() == [3, 2, 1, 1, 1]
    first = cam.iloc[0]
    assert first["seeds"] == "[0, 1, 2]" and first["split"] == "val" and first["num_images"] == 10
    assert first["runs"] == json.dumps([version(0), version(1), version(2)])
    assert first["value_mean"] == pytest.approx(0.4) and first["value_sd"] == pytest.approx(0.1)
    assert first["stage1_miou_mean"] == pytest.approx(0.3)
    assert first["context_leak_mean"] == pytest.approx(0.4)
    assert first["context_leak_sd"] == pytest.approx(0.2)
    assert cam.iloc[1]["value_mean"] == pytest.approx(0.25) and cam.iloc[1]["seeds"] == "[0, 1]"
    assert math.isnan(cam.iloc[2]["value_sd"])  # one run: no spread
    # labels name what tells a report's configurations apart
    assert list(cam.index) == [
        "split=val, num_images=10, ablation=all, extra=None",
        "split=val, num_images=10, ablation=match_only, extra=None",
        "split=val, num_images=3, ablation=all, extra=None",
        "split=train, num_images=10, ablation=all, extra=None",
        "split=val, num_images=10, ablation=all, extra=1",
    ]
    pseudo = ablation[ablation["report"] == "pseudo_mask_metrics"].iloc[0]
    assert pseudo["configuration"] == "all runs" and pseudo["seeds"] == "[4]"
    assert math.isnan(pseudo["stage1_miou_mean"]) and pseudo["context_leak_mean"] == 0.3
    assert "params.seed" not in ablation and "params.lam" in ablation


def test_ablation_table_of_chosen_reports_and_of_nothing():
    table = comparison_table(ABLATION_HISTORY, STAGE_SPECS)
    assert set(ablation_table(table, ["pseudo_mask_metrics"])["report"]) == {"pseudo_mask_metrics"}
    empty = ablation_table(comparison_table({}, STAGE_SPECS))
    assert empty.empty and {"configuration", "n", "seeds", "value_mean"} <= set(empty.columns)


def test_ablation_table_survives_the_csv_round_trip(tmp_path):
    unseeded = {version(9): {"miou": 0.1}}  # no seed: the seed column turns float in the CSV
    history = {**ABLATION_HISTORY, "pseudo_mask_metrics": unseeded}
    table = comparison_table(history, STAGE_SPECS)
    table.to_csv(tmp_path / "run_comparison.csv", index=False)
    reread = ablation_table(pd.read_csv(tmp_path / "run_comparison.csv"))
    for column in ("n", "seeds", "configuration"):
        pd.testing.assert_series_equal(reread[column], ablation_table(table)[column])


def test_ablation_summary_reads_mean_and_sd():
    ablation = ablation_table(comparison_table(ABLATION_HISTORY, STAGE_SPECS), ["cam_metrics"])
    summary = ablation_summary(ablation.iloc[:3], float_format="{:.2f}")
    assert list(summary.columns) == [
        "report", "configuration", "split", "num_images", "n", "seeds", "value", "stage1_miou",
        "context_leak",
    ]  # fmt: skip
    assert summary["value"].tolist() == ["0.40 ± 0.10", "0.25 ± 0.07", "0.90"]
    assert "| 0.40 ± 0.10 |" in table_to_markdown(summary)


def test_deltas_stay_within_one_series_of_the_same_data():
    """A run on fewer images or on another toy world starts its own series: no delta against
    the run before it, which was on other data."""
    runs = {
        OLD: cam_report(0.4, {}, dataset="toy", dataset_params={"context_fill": 0.0}),
        NEW: cam_report(0.5, {}, dataset="toy", dataset_params={"context_fill": 1.0}),
        NEWEST: cam_report(0.7, {}, dataset="toy", dataset_params={"context_fill": 1.0}),
        "2026-11-27T00.00.00.000Z": {**cam_report(0.9, {}, dataset="toy",
                                                  dataset_params={"context_fill": 1.0}),
                                     "num_images": 3},
    }  # fmt: skip
    table = comparison_table({"cam_metrics": runs}, SPECS)
    deltas = table["delta"].tolist()
    assert math.isnan(deltas[0]) and math.isnan(deltas[1]) and math.isnan(deltas[3])
    assert deltas[2] == pytest.approx(0.2)


def test_run_status_tells_killed_runs_from_live_ones():
    import os
    import socket
    import subprocess
    import sys

    from semples.reporting import run_status

    here = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout  # fmt: skip
    assert run_status(None) == "unrecorded"
    assert run_status({"status": "finished"}) == "finished"
    assert run_status({"status": "failed"}) == "failed"
    assert run_status({"status": "running", "pid": os.getpid(), "host": here}) == "running"
    assert run_status({"status": "running", "pid": int(dead), "host": here}) == "did not finish"
    assert run_status({"status": "running", "pid": os.getpid(), "host": "elsewhere"}) == (
        "did not finish"
    )


def test_comparison_table_marks_each_report_with_its_run_status():
    runs = {OLD: {"status": "finished"}, NEW: {"status": "failed"}}
    table = comparison_table(HISTORY, SPECS, runs=runs)
    statuses = dict(zip(zip(table["report"], table["run"]), table["status"]))
    assert statuses[("cam_metrics", OLD)] == "finished"
    assert statuses[("cam_metrics", NEW)] == "failed"
    assert statuses[("cam_metrics", NEWEST)] == "unrecorded"
