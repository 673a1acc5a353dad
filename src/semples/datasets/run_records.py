"""One small JSON record per ``kedro run``: whether it is running, finished or failed.

A run killed with SIGKILL (out of memory, a pre-empted machine) calls no hook, so its reports
would look like any other's. Its record, written when its first node starts, stays ``running``
with a process id that no longer exists: ``reporting`` marks the reports it left as from a run
that did not finish. Records are named by the run's save version, the folder name of every
versioned artefact the run wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from semples.checkpoints import replace_atomically


class RunRecordsDataset(AbstractDataset[dict, dict[str, dict]]):
    """Loads ``{run: record}`` for every record in ``path``; saves one record (its ``run`` key
    names the file), atomically, replacing that run's earlier record."""

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, dict]:
        records = {}
        for file in sorted(self._path.glob("*.json")):
            try:
                records[file.stem] = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as error:
                records[file.stem] = {"status": "unreadable", "error": str(error)}
        return records

    def save(self, data: dict) -> None:
        run = data.get("run")
        if not isinstance(run, str) or not run or "/" in run or run.startswith("."):
            raise DatasetError(f"a run record needs a plain 'run' name, got {run!r}")
        text = json.dumps(data, indent=2, default=str)
        replace_atomically(self._path / f"{run}.json", lambda staging: staging.write_text(text))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
