"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from semples.pipelines import ingestion


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under ``semples.pipelines``; ``pseudo_labels`` starts from ingestion, as
    users run it on its own; ``__default__`` runs them all.

    Kedro 1.7 finds only the pipelines a run asks for, so ingestion is composed in directly.
    """
    pipelines = find_pipelines(raise_errors=True)
    if "pseudo_labels" in pipelines:
        pipelines["pseudo_labels"] = ingestion.create_pipeline() + pipelines["pseudo_labels"]
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
