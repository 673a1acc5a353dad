"""Kedro hooks: the project's parameters are checked before the first node runs."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from semples.parameters import validate_parameters


class ParameterValidation:
    """Validate the parameter sections a pipeline reads against ``semples.parameters``, so that
    a typo or a bad value fails in a second with its name, not after an hour of training."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        inputs = pipeline.inputs()
        sections = {
            name.removeprefix("params:").split(".")[0]
            for name in inputs
            if name.startswith("params:")
        }
        every_section = "parameters" in inputs
        validate_parameters(catalog.load("parameters"), None if every_section else sections)
