"""Every saved version of a versioned JSON report, for comparing runs."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError, Version
from kedro_datasets.json import JSONDataset


class ReportHistoryDataset(AbstractDataset[dict, dict[str, dict]]):
    """Read-only: loads ``{version: report}`` for all versions of a versioned JSON report.

    ``filepath`` is the same path as the report's own versioned ``json.JSONDataset`` entry
    (``data/08_reporting/cam_metrics.json``). Versions come oldest first. A report never
    written yet loads as an empty mapping, so reports that later pipelines add plug in by name.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, dict]:
        latest = JSONDataset(filepath=str(self._filepath), version=Version(None, None))
        if not latest.exists():
            return {}
        versions = sorted(latest.list_versions(full_path=False))
        return {
            version: JSONDataset(
                filepath=str(self._filepath), version=Version(version, None)
            ).load()
            for version in versions
        }

    def save(self, data: dict) -> None:
        raise DatasetError(f"{self._filepath} history is read-only; save the report itself")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
