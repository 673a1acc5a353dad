"""Kedro hooks: parameters checked before the first node runs; a record of every run."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from semples.parameters import validate_parameters


class ParameterValidation:
    """Validate the parameter sections a pipeline reads against ``semples.parameters``, so that
    a typo or a bad value fails in a second with its name, not after an hour of training."""

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: DataCatalog) -> None:
        inputs = pipeline.inputs()
        sections = {
            name.removeprefix("params:").split(".")[0]
            for name in inputs
            if name.startswith("params:")
        }
        every_section = "parameters" in inputs
        validate_parameters(catalog.load("parameters"), None if every_section else sections)


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
