"""Kedro hooks: parameters checked before the first node runs; a record of every run; a copy
of every report, loss history and figure in the run's MLflow run (kedro-mlflow starts it)."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from mlflow.entities import Metric

from semples.parameters import validate_parameters
from semples.tracking import history_metrics, report_metrics

# MlflowClient.log_batch takes at most this many metrics per call.
_MLFLOW_BATCH = 1000


def _parameter_sections(pipeline: Pipeline) -> set[str]:
    """The top-level parameter sections a pipeline's nodes read (``params:<section>...``)."""
    return {
        name.removeprefix("params:").split(".")[0]
        for name in pipeline.inputs()
        if name.startswith("params:")
    }


class ParameterValidation:
    """Validate the parameter sections a pipeline reads against ``semples.parameters``, so that
    a typo or a bad value fails in a second with its name, not after an hour of training. It
    runs before every other ``before_pipeline_run`` (``tryfirst``), so a run with bad parameters
    opens no MLflow run."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline: Pipeline, catalog: DataCatalog) -> None:
        every_section = "parameters" in pipeline.inputs()
        sections = None if every_section else _parameter_sections(pipeline)
        validate_parameters(catalog.load("parameters"), sections)


class MlflowCopies:
    """Give the MLflow run that kedro-mlflow started for this ``kedro run`` a name (pipeline and
    seed) and a copy of what the catalog saves: every ``*@json`` report's numbers as metrics,
    every ``*_loss_history`` as step metrics, every ``*_plot`` figure as an artefact. Without an
    active run (tracking switched off) it does nothing; the catalog stays the source of truth."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        if mlflow.active_run() is None:
            return
        parameters = catalog.load("parameters")
        seeds = {
            section: parameters[section]["seed"]
            for section in sorted(_parameter_sections(pipeline))
            if isinstance(parameters.get(section), dict) and "seed" in parameters[section]
        }
        names = "+".join(run_params.get("pipeline_names") or ["__default__"])
        if len(set(seeds.values())) == 1:
            names += f" seed {next(iter(seeds.values()))}"
        elif seeds:
            names += " " + ", ".join(f"{section}.seed {seed}" for section, seed in seeds.items())
        mlflow.set_tag("mlflow.runName", names)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        run = mlflow.active_run()
        if run is None:
            return
        if dataset_name.endswith("@json") and isinstance(data, dict):
            mlflow.log_metrics(report_metrics(data, dataset_name.removesuffix("@json")))
        elif dataset_name.endswith("_loss_history") and isinstance(data, pd.DataFrame):
            rows, now = history_metrics(data, dataset_name), int(time.time() * 1000)
            client = mlflow.MlflowClient()
            for start in range(0, len(rows), _MLFLOW_BATCH):
                client.log_batch(run.info.run_id, metrics=[
                    Metric(name, value, now, step)
                    for name, value, step in rows[start : start + _MLFLOW_BATCH]
                ])  # fmt: skip
        elif dataset_name.endswith("_plot") and hasattr(data, "savefig"):
            mlflow.log_figure(data, f"figures/{dataset_name.removesuffix('_plot')}.png")


class RunRecords:
    """Write ``run_records``: ``running`` when a run's first node starts (with its process id),
    ``finished`` or ``failed`` at the end. A killed run stays ``running`` with a dead process."""

    def __init__(self) -> None:
        self._record: dict[str, Any] | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._record = {
            "run": run_params.get("run_id"),
            "pipelines": run_params.get("pipeline_names"),
            "env": run_params.get("env"),
            "params": run_params.get("runtime_params"),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }

    @hook_impl
    def before_node_run(self, catalog: DataCatalog) -> None:
        if self._record is not None and "status" not in self._record:
            self._save(catalog, status="running", started=_now())

    @hook_impl
    def after_pipeline_run(self, catalog: DataCatalog) -> None:
        if self._record is not None and "status" in self._record:
            self._save(catalog, status="finished", ended=_now())

    @hook_impl
    def on_pipeline_error(self, error: Exception, catalog: DataCatalog) -> None:
        if self._record is not None and "status" in self._record:
            self._save(catalog, status="failed", ended=_now(), error=str(error)[:1000])

    def _save(self, catalog: DataCatalog, **fields: Any) -> None:
        self._record = {**self._record, **fields}
        if self._record["run"] and "run_records" in catalog:
            catalog.save("run_records", self._record)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
