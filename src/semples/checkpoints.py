"""Writing torch checkpoints so that a crash never leaves a half-written file, and naming the
scratch checkpoints an interrupted run resumes from."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` to a hidden temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        torch.save(state, staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def fingerprint(payload: Any) -> str:
    """A short hash of everything that defines a run (config, data, initial weights), naming
    the checkpoint it resumes from: a changed run never resumes another's."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]
