"""Ingestion nodes: thin adapters over :mod:`semples.data.ingest`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from semples.data import ingest


def generate_dataset_files(params: dict[str, Any]) -> tuple[dict, dict, dict, pd.DataFrame]:
    files = ingest.generate_files(params)
    return files.images, files.masks, files.contexts, files.annotations


def build_image_index(
    images, masks, contexts, annotations: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], pd.DataFrame]:
    dataset = ingest.build_index(params, images, masks, contexts, annotations)
    name = ingest.dataset_name(params)
    # The dataset's own parameters travel with its classes into every run's report, so that
    # runs on different toy worlds (or roots) are never grouped or compared as one series.
    classes = {
        "dataset": name, "dataset_params": dict(params[name]), "class_names": dataset.class_names
    }  # fmt: skip
    skipped = pd.DataFrame(dataset.skipped, columns=["id", "split", "path", "reason"])
    return dataset.image_index, dataset.caption_index, classes, skipped


def report_ingestion(
    image_index: pd.DataFrame, classes: dict[str, Any], skipped: pd.DataFrame, params: dict
) -> dict[str, Any]:
    return ingest.ingestion_report(
        image_index, classes["class_names"], skipped.to_dict("records"), params
    )
