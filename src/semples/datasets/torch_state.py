"""A versioned torch checkpoint (state dicts, prompts, histories of plain values)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from semples.checkpoints import load_state, save_atomic


class TorchStateDataset(AbstractVersionedDataset[dict, dict]):
    """Saves a dict of tensors and plain values with ``torch.save``; loads it with
    ``weights_only=True`` on the CPU, so a checkpoint can never execute code.

    The save writes a hidden temporary file and renames it into place: an interrupted save
    leaves no partial checkpoint. Example::

        stage1_checkpoint:
          type: semples.datasets.TorchStateDataset
          filepath: data/06_models/stage1.pt
          versioned: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(filepath=PurePosixPath(Path(filepath).as_posix()), version=version)
        self.metadata = metadata

    def load(self) -> dict:
        path = Path(self._get_load_path())
        if not path.is_file():
            raise DatasetError(f"checkpoint {path} does not exist")
        return load_state(path)

    def save(self, data: dict) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"a checkpoint is saved from a dict, got {type(data).__name__}")
        save_atomic(data, Path(self._get_save_path()))

    def _exists(self) -> bool:
        return Path(self._get_load_path()).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
