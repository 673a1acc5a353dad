"""Compares every saved version of the metric reports across runs."""

from semples.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
