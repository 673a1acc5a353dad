"""SemPLES pseudo labels: toy CLIP -> stage 1 -> stage 2 -> stage 3 -> CAMs -> CAM report."""

from semples.pipelines.pseudo_labels.pipeline import create_pipeline

__all__ = ["create_pipeline"]
