"""Builds the image index of the configured dataset (generates the toy world when configured)."""

from semples.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
