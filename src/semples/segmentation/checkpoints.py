"""MMEngine checkpoints that load with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and MMEngine's resume then fails on its
message hub: each ``HistoryBuffer`` pickles NumPy arrays and its statistics as bound methods
through ``builtins.getattr``. Allowing ``getattr`` as a safe global would let a checkpoint reach
any attribute of any allowed object, which is what the check exists to stop. So the hook below
stores the buffers as plain lists and numbers and rebuilds them after loading; every
checkpoint our runs write then holds only tensors and plain Python values, and nothing has to be
allowed at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmseg.registry import HOOKS

from semples.checkpoints import load_state

_PLAIN_BUFFER = "plain_history_buffer"


def _plain(value: Any) -> Any:
    if isinstance(value, HistoryBuffer):
        log, count = value.data
        return {_PLAIN_BUFFER: True, "log_history": log.tolist(),
                "count_history": count.tolist(), "max_length": value.max_length}  # fmt: skip
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, dict) and value.get(_PLAIN_BUFFER):
        return HistoryBuffer(value["log_history"], value["count_history"], value["max_length"])
    return value


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Message-hub buffers and NumPy values as plain data on save, rebuilt on load."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get("message_hub")
        if hub:
            hub["log_scalars"] = {k: _plain(v) for k, v in hub["log_scalars"].items()}
            hub["runtime_info"] = {k: _plain(v) for k, v in hub["runtime_info"].items()}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get("message_hub")
        if hub:
            hub["log_scalars"] = {k: _restored(v) for k, v in hub["log_scalars"].items()}


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint loaded on the CPU with ``weights_only=True``; names a missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepLabV2 checkpoint {path} does not exist")
    return load_state(path)
