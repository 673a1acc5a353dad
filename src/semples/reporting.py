"""Comparison of the versioned JSON reports that every run writes.

``history[report_name][version] = report`` holds, for each report (e.g. ``cam_metrics``), the
dict each run saved under its version string. Kedro's versions are timestamps such as
``2026-11-26T08.01.02.345Z`` that sort chronologically as strings, so "previous run" and "latest
runs" mean the previous / last versions in string order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

FIXED_COLUMNS = ["report", "run", "metric", "value", "delta", "split", "num_images"]
PARAMS_PREFIX = "params."


@dataclass(frozen=True)
class ReportSpec:
    """Which keys of a report hold its headline number and its per-class mapping."""

    headline: str
    per_class: str


def _flatten(params: Mapping, prefix: str = PARAMS_PREFIX) -> dict[str, object]:
    """Nested parameters as dotted columns; lists as JSON strings so that cells stay scalar."""
    flat: dict[str, object] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat


def _as_float(value: object) -> float:
    """A report number as float; JSON null (an undefined score) becomes NaN."""
    return math.nan if value is None else float(value)


def _runs(history: Mapping[str, Mapping[str, dict]], report: str) -> list[tuple[str, dict]]:
    """(version, report dict) of one report's runs, oldest first."""
    return sorted(history.get(report, {}).items())


def _require_key(report: dict, key: str, name: str, version: str) -> object:
    if key not in report:
        raise ValueError(f"report {name!r} of run {version!r} has no key {key!r}")
    return report[key]


def comparison_table(
    history: Mapping[str, Mapping[str, dict]], specs: Mapping[str, ReportSpec]
) -> pd.DataFrame:
    """One row per (report, run): headline value, change since the previous run, parameters.

    Reports without a spec are ignored; a spec whose report has no runs gives no rows.
    """
    rows = []
    for name in sorted(specs):
        for version, report in _runs(history, name):
            headline = specs[name].headline
            rows.append(
                {
                    "report": name,
                    "run": version,
                    "metric": headline,
                    "value": _as_float(_require_key(report, headline, name, version)),
                    "split": report.get("split"),
                    "num_images": report.get("num_images"),
                    **_flatten(report.get("params", {})),
                }
            )
    table = pd.DataFrame(rows, columns=None if rows else FIXED_COLUMNS)
    table = table.astype({"value": float})
    table["delta"] = table.groupby("report")["value"].diff()
    params = sorted(c for c in table.columns if c.startswith(PARAMS_PREFIX))
    return table[FIXED_COLUMNS + params]


def with_changed_params_only(table: pd.DataFrame) -> pd.DataFrame:
    """The table without parameter columns that hold one value in every run: what tells runs
    apart, for reading in a log (the saved table keeps every parameter)."""
    constant = [
        column
        for column in table.columns
        if column.startswith(PARAMS_PREFIX) and table[column].nunique(dropna=False) <= 1
    ]
    return table.drop(columns=constant)


def per_class_frame(
    history: Mapping[str, Mapping[str, dict]],
    specs: Mapping[str, ReportSpec],
    report: str,
    last: int = 2,
) -> pd.DataFrame:
    """Per-class values of one report's latest ``last`` runs: rows classes, columns versions."""
    if report not in specs:
        raise ValueError(f"no ReportSpec for report {report!r}")
    if last < 1:
        raise ValueError(f"last must be at least 1, got {last}")
    key = specs[report].per_class
    columns = {
        version: pd.Series(_require_key(values, key, report, version), dtype=float)
        for version, values in _runs(history, report)[-last:]
    }
    frame = pd.concat(columns, axis=1, sort=False) if columns else pd.DataFrame(dtype=float)
    frame.index.name = "class"
    return frame


def _cell(value: object, float_format: str) -> str:
    """One Markdown cell: NaN/None empty, floats formatted, pipes escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = float_format.format(value) if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _column_cells(column: pd.Series, float_format: str) -> list[str]:
    """A float column of whole numbers (counts made float by a missing value) shows integers."""
    values = column.tolist()
    defined = [v for v in values if isinstance(v, float) and not math.isnan(v)]
    if pd.api.types.is_float_dtype(column) and defined and all(v.is_integer() for v in defined):
        values = [v if math.isnan(v) else int(v) for v in values]
    return [_cell(v, float_format) for v in values]


def table_to_markdown(df: pd.DataFrame, float_format: str = "{:.4f}") -> str:
    """A GitHub-flavoured Markdown table of ``df``'s columns (the index is not written).

    Written by hand because ``DataFrame.to_markdown`` needs ``tabulate``, which is not installed;
    use ``df.reset_index()`` to include an index. Numeric columns are right-aligned.
    """
    columns = [_column_cells(df[c], float_format) for c in df.columns]
    header = [_cell(str(c), float_format) for c in df.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns]
    lines = [header, align, *zip(*columns)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"
