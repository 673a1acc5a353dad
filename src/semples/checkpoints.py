"""Writing torch checkpoints so that a crash never leaves a half-written file."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

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
