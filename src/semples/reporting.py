"""Comparison of the versioned JSON reports that every run writes.

``history[report_name][version] = report`` holds, for each report (e.g. ``cam_metrics``), the
dict each run saved under its version string. Kedro's versions are timestamps such as
``2026-11-26T08.01.02.345Z`` that sort chronologically as strings, so "previous run" and "latest
runs" mean the previous / last versions in string order.

The ablation table groups those runs by configuration (every parameter but the seed) and gives
each group's mean, spread and seeds: one seed's difference is within the noise on the toy world.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from semples import viz
from semples.parameters import Reporting, parse_section

logger = logging.getLogger(__name__)

FIXED_COLUMNS = ["report", "run", "status", "metric", "value", "delta", "split", "num_images"]
PARAMS_PREFIX = "params."
SEED_COLUMN = "params.seed"
# What a configuration is besides its parameters: runs on other data are never pooled.
CONFIGURATION_COLUMNS = ["report", "split", "num_images"]


@dataclass(frozen=True)
class ReportSpec:
    """Which keys of a report hold its headline number and its per-class mapping, and which
    further numbers become columns of the comparison (name -> dotted key path in the report,
    e.g. ``stage1_miou: stages.stage1.miou``; missing in older reports gives NaN)."""

    headline: str
    per_class: str
    columns: Mapping[str, str] = field(default_factory=dict)


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


def _lookup(report: Mapping, path: str) -> float:
    """The number at a dotted key path of a report, NaN where the path does not lead to one."""
    value: object = report
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return math.nan
        value = value[key]
    return _as_float(value) if value is None or isinstance(value, (int, float)) else math.nan


def _extra_columns(specs: Mapping[str, ReportSpec]) -> list[str]:
    """Every spec's extra column names, each once, in the order the specs give them."""
    return list(dict.fromkeys(name for spec in specs.values() for name in spec.columns))


def _runs(history: Mapping[str, Mapping[str, dict]], report: str) -> list[tuple[str, dict]]:
    """(version, report dict) of one report's runs, oldest first."""
    return sorted(history.get(report, {}).items())


def _require_key(report: dict, key: str, name: str, version: str) -> object:
    if key not in report:
        raise ValueError(f"report {name!r} of run {version!r} has no key {key!r}")
    return report[key]


def run_status(record: Mapping[str, Any] | None) -> str:
    """What became of the run that wrote a report: ``finished``, ``failed``, ``running`` (its
    process is alive on this host), ``did not finish`` (recorded as running, but its process is
    gone: killed) or ``unrecorded`` (no record, e.g. runs older than the records)."""
    if record is None:
        return "unrecorded"
    status = str(record.get("status", "unrecorded"))
    if status != "running":
        return status
    alive = record.get("host") == socket.gethostname() and _process_alive(record.get("pid"))
    return "running" if alive else "did not finish"


def _process_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def comparison_table(
    history: Mapping[str, Mapping[str, dict]],
    specs: Mapping[str, ReportSpec],
    runs: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per (report, run): what became of the run (``run_status`` of its record in
    ``runs``), headline value, change since the previous run, the specs' extra columns (e.g.
    each stage's mIoU beside the final one), parameters.

    Reports without a spec are ignored; a spec whose report has no runs gives no rows.
    """
    runs = runs or {}
    extras = _extra_columns(specs)
    rows = []
    for name in sorted(specs):
        for version, report in _runs(history, name):
            headline = specs[name].headline
            rows.append(
                {
                    "report": name,
                    "run": version,
                    "status": run_status(runs.get(version)),
                    "metric": headline,
                    "value": _as_float(_require_key(report, headline, name, version)),
                    "split": report.get("split"),
                    "num_images": report.get("num_images"),
                    **{column: math.nan for column in extras},
                    **{
                        column: _lookup(report, path)
                        for column, path in specs[name].columns.items()
                    },
                    **_flatten(report.get("params", {})),
                }
            )
    table = pd.DataFrame(rows, columns=None if rows else FIXED_COLUMNS + extras)
    table = table.astype({"value": float, **{column: float for column in extras}})
    # A change is only a change within one series: the same report on the same data (split,
    # image count, dataset and its parameters); a test run is never compared with a full one.
    data = [c for c in table.columns if c.startswith(f"{PARAMS_PREFIX}dataset")]
    series = _configuration_keys(table, [*CONFIGURATION_COLUMNS, *data])
    table["delta"] = table.groupby(series)["value"].diff() if len(table) else []
    params = sorted(c for c in table.columns if c.startswith(PARAMS_PREFIX))
    return table[FIXED_COLUMNS + extras + params]


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The numbers of a comparison table's runs: the headline ``value`` and the extra columns."""
    extras = [c for c in table.columns if c not in FIXED_COLUMNS and c not in _params(table)]
    return ["value", *extras]


def _params(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith(PARAMS_PREFIX)]


def _plain(value: object) -> object:
    """A cell as a JSON-able scalar, NaN as None, so that NaN equals NaN in a group key."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _whole(value: object) -> object:
    """A float that holds an integer (a count or seed made float by a missing value) as int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _key(values: Sequence[object]) -> str:
    """Cells as one comparable string (NaN and None alike, numpy scalars as Python's)."""
    return json.dumps([_plain(v) for v in values], default=str)


def _configuration_keys(table: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string per run naming its configuration: the values of ``columns``, all of them."""
    rows = table[list(columns)].itertuples(index=False)
    return pd.Series([_key(row) for row in rows], index=table.index, dtype=object)


def _configuration_labels(ablation: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Short names of each report's configurations: the columns that differ between them."""
    labels = pd.Series("", index=ablation.index, dtype=object)
    for _, groups in ablation.groupby("report", sort=False):
        varying = [c for c in columns if len({_key([v]) for v in groups[c]}) > 1]
        labels[groups.index] = [
            ", ".join(f"{c.removeprefix(PARAMS_PREFIX)}={_whole(_plain(row[c]))}" for c in varying)
            or "all runs"
            for _, row in groups.iterrows()
        ]
    return labels


def _group_stats(runs: pd.DataFrame, metrics: Sequence[str]) -> dict[str, object]:
    """n, seeds and run versions of one configuration, and each metric's mean and sample sd."""
    seeds = runs[SEED_COLUMN].dropna().tolist() if SEED_COLUMN in runs else []
    stats: dict[str, object] = {
        "n": len(runs),
        "seeds": json.dumps(sorted(_whole(_plain(seed)) for seed in seeds)),
        "runs": json.dumps(runs["run"].tolist()),
    }
    for metric in metrics:
        stats[f"{metric}_mean"] = runs[metric].mean()
        stats[f"{metric}_sd"] = runs[metric].std(ddof=1)
    return stats


def ablation_table(table: pd.DataFrame, reports: Sequence[str] | None = None) -> pd.DataFrame:
    """A comparison table's runs grouped by configuration: per group n, the seeds and runs, and
    the mean and sample sd (NaN for one run) of the headline and of every extra column.

    A configuration is the report, split, image count and *every* parameter except the seed
    (the full set, not only those that differ, so runs of other data or settings never pool).
    ``configuration`` names a group by what differs from the report's other groups; the
    parameter columns come last. ``reports`` keeps those reports only (all when None).
    """
    if reports is not None:
        table = table[table["report"].isin(list(reports))]
    params = [c for c in _params(table) if c != SEED_COLUMN]
    metrics = metric_columns(table)
    identity = [*CONFIGURATION_COLUMNS, "metric", *params]
    groups = [runs for _, runs in table.groupby(_configuration_keys(table, identity), sort=False)]
    stats = ["n", "seeds", "runs", *(f"{m}_{s}" for m in metrics for s in ("mean", "sd"))]
    ablation = pd.DataFrame(
        [{**runs.iloc[0][identity].to_dict(), **_group_stats(runs, metrics)} for runs in groups],
        columns=[*identity, *stats],
    )
    ablation["configuration"] = _configuration_labels(ablation, ["split", "num_images", *params])
    return ablation[[*CONFIGURATION_COLUMNS, "metric", "configuration", *stats, *params]]


def ablation_summary(ablation: pd.DataFrame, float_format: str = "{:.4f}") -> pd.DataFrame:
    """The ablation table for reading: configuration, n, seeds and "mean ± sd" per metric
    (blank where a report has no such number), without the parameter columns."""
    metrics = [c.removesuffix("_mean") for c in ablation.columns if c.endswith("_mean")]
    summary = ablation[["report", "configuration", "split", "num_images", "n", "seeds"]].copy()
    for metric in metrics:
        mean, sd = ablation[f"{metric}_mean"], ablation[f"{metric}_sd"]
        if mean.notna().any():
            summary[metric] = [
                _mean_sd(m, s, float_format) for m, s in zip(mean.tolist(), sd.tolist())
            ]
    return summary


def _mean_sd(mean: float, sd: float, float_format: str) -> str:
    if math.isnan(mean):
        return ""
    text = float_format.format(mean)
    return text if math.isnan(sd) else f"{text} ± {float_format.format(sd)}"


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


# --- the reporting pipeline's steps: each parses its section once into the typed config ----


def _typed(params: Mapping[str, Any]) -> Reporting:
    return parse_section("reporting", params)


def report_specs(run: Reporting) -> dict[str, ReportSpec]:
    return {name: ReportSpec(**spec.model_dump()) for name, spec in run.reports.items()}


def compare_runs(
    params: Mapping[str, Any], run_records: dict[str, dict], **histories: dict[str, dict]
) -> pd.DataFrame:
    """The comparison table of every saved report version; runs that did not finish are
    warned about, and the parameters that differ between runs are logged as a table."""
    table = comparison_table(histories, report_specs(_typed(params)), runs=run_records)
    unfinished = table[~table["status"].isin(["finished", "running", "unrecorded"])]
    for _, row in unfinished.iterrows():
        logger.warning("%s of run %s: the run %s", row["report"], row["run"], row["status"])
    logger.info(
        "Runs compared (parameters that differ between runs; %s has them all):\n%s",
        "run_comparison",
        table_to_markdown(with_changed_params_only(table)),
    )
    return table


def plot_per_class_latest_runs(params: Mapping[str, Any], **histories: dict[str, dict]) -> Figure:
    """Per-class scores of the last ``per_class_runs`` runs of every report that has any."""
    run = _typed(params)
    specs = report_specs(run)
    frames = {
        name: per_class_frame(histories, specs, name, last=run.per_class_runs)
        for name in specs
        if histories.get(name)
    }
    return viz.plot_per_class_latest_runs(frames)


def tabulate_ablation(table: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The runs grouped by configuration (mean, spread, seeds), logged as a table."""
    ablation = ablation_table(table, _typed(params).ablation.reports)
    logger.info(
        "Runs grouped by configuration (all parameters but the seed; %s has them all):\n%s",
        "ablation_table",
        table_to_markdown(ablation_summary(ablation)),
    )
    return ablation
