"""Reporting nodes: thin adapters over :mod:`semples.reporting` and :mod:`semples.viz`."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from semples import reporting, viz

logger = logging.getLogger(__name__)


def _specs(params: dict[str, Any]) -> dict[str, reporting.ReportSpec]:
    return {name: reporting.ReportSpec(**spec) for name, spec in params["reports"].items()}


def compare_runs(
    params: dict[str, Any], run_records: dict[str, dict], **histories: dict[str, dict]
) -> pd.DataFrame:
    table = reporting.comparison_table(histories, _specs(params), runs=run_records)
    unfinished = table[~table["status"].isin(["finished", "running", "unrecorded"])]
    for _, row in unfinished.iterrows():
        logger.warning("%s of run %s: the run %s", row["report"], row["run"], row["status"])
    logger.info(
        "Runs compared (parameters that differ between runs; %s has them all):\n%s",
        "run_comparison",
        reporting.table_to_markdown(reporting.with_changed_params_only(table)),
    )
    return table


def plot_headline_across_runs(table: pd.DataFrame) -> Figure:
    return viz.plot_headline_across_runs(table)


def plot_per_class_latest_runs(params: dict[str, Any], **histories: dict[str, dict]) -> Figure:
    specs = _specs(params)
    frames = {
        name: reporting.per_class_frame(histories, specs, name, last=params["per_class_runs"])
        for name in specs
        if histories.get(name)
    }
    return viz.plot_per_class_latest_runs(frames)


def tabulate_ablation(table: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    ablation = reporting.ablation_table(table, params["ablation"]["reports"])
    logger.info(
        "Runs grouped by configuration (all parameters but the seed; %s has them all):\n%s",
        "ablation_table",
        reporting.table_to_markdown(reporting.ablation_summary(ablation)),
    )
    return ablation


def plot_ablation(ablation: pd.DataFrame) -> Figure:
    return viz.plot_ablation(ablation)
