"""DeepLabV2 segmentation: pseudo masks -> MMEngine training -> val predictions -> report."""

from semples.pipelines.segmentation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
