"""What a run's reports and loss histories become in an experiment tracker (MLflow).

The Kedro catalog keeps the reports; a tracker gets a flat copy to compare runs by: every
number of a report under ``<report>/<path>`` (``cam_metrics/miou``,
``cam_metrics/stages/stage1/miou``, per-class IoU as ``cam_metrics/iou/<class>``), and every
loss column of a history as a step metric ``<history>/<column>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

# Report keys renamed for the tracker: per-class IoU is what users compare, as iou/<class>.
_RENAMED = {"per_class_iou": "iou"}
# Report parts that are not metrics: the run's parameters (logged as parameters) and the
# threshold sweep (a curve, kept in the report).
_SKIPPED = {"params", "sweep"}
# History columns that index a row rather than measure it.
_INDEX_COLUMNS = {"step", "epoch", "stage", "iter"}
_UNSAFE = re.compile(r"[^\w\-. /]")


def metric_name(*parts: str) -> str:
    """``parts`` joined by '/', with characters MLflow refuses in a key replaced by '_'."""
    return _UNSAFE.sub("_", "/".join(parts))


def report_metrics(report: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Every finite number in ``report`` (nested dicts walked, lists and ``params`` left out)
    as ``{"<prefix>/<key>/...": value}``; booleans are not metrics."""
    return dict(_numbers(report, (prefix,)))


def _numbers(node: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[str, float]]:
    for key, value in node.items():
        if key in _SKIPPED:
            continue
        here = (*path, _RENAMED.get(key, str(key)))
        if isinstance(value, Mapping):
            yield from _numbers(value, here)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                yield metric_name(*here), float(value)


def history_metrics(history: pd.DataFrame, prefix: str) -> list[tuple[str, float, int]]:
    """``(name, value, step)`` for every finite value of every numeric, non-index column of a
    loss history; the step is the ``step`` (or ``iter``) column, else the row number."""
    step_column = next((c for c in ("step", "iter") if c in history.columns), None)
    steps = history[step_column] if step_column else pd.Series(range(len(history)))
    rows = []
    for column in history.columns:
        if column in _INDEX_COLUMNS or not pd.api.types.is_numeric_dtype(history[column]):
            continue
        name = metric_name(prefix, str(column))
        for step, value in zip(steps, history[column], strict=True):
            if pd.notna(value) and math.isfinite(value):
                rows.append((name, float(value), int(step)))
    return rows
