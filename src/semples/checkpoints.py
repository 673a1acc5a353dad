"""Writing files (torch checkpoints, run records) so that a crash never leaves a half-written
one, and naming the scratch checkpoints an interrupted run resumes from."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a hidden temporary file beside ``path``, then rename it into place: readers see
    the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (``replace_atomically``)."""
    replace_atomically(path, lambda staging: torch.save(state, staging))


def load_state(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of ``path``; a truncated or corrupt file raises an
    error that names it (torch's own names neither the file nor, for a cut zip, the cause)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {error}"
        ) from error


def fingerprint(payload: Any) -> str:
    """A short hash of everything that defines a run (config, data, initial weights), naming
    the checkpoint it resumes from: a changed run never resumes another's."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def scratch_checkpoint(folder: str | Path | None, name: str, **run: Any) -> Path | None:
    """Where a run's epoch checkpoint goes: ``folder/<name>-<fingerprint of run>.pt``, so a
    changed run (config, data, initial weights) never resumes another's; None without a
    folder (no checkpoints)."""
    return None if folder is None else Path(folder) / f"{name}-{fingerprint(run)}.pt"
