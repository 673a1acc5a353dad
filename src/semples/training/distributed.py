"""Multi-process (DDP) training launched from inside a Kedro node.

``launch`` starts N worker processes with torchrun's own elastic launcher (``--standalone``
rendezvous on this machine), runs ``fn(inputs)`` in each with a process group initialised (NCCL
on GPUs, gloo on CPUs) and returns rank 0's result. Kedro itself stays one process, so every
artefact is saved once, by the node.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

Result = TypeVar("Result")


def is_worker() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_worker() else 0


def world_size() -> int:
    return dist.get_world_size() if is_worker() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def process_device(device: torch.device) -> torch.device:
    """``device``; in a DDP process on GPUs, this process's own GPU."""
    if is_worker() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def _worker(fn: Callable[..., Result], inputs: Any) -> Result | None:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    try:
        result = fn(inputs, progress=dist.get_rank() == 0)
        dist.barrier()
        return result if dist.get_rank() == 0 else None
    finally:
        dist.destroy_process_group()


def launched(fn: Callable[..., Result], inputs: Any, processes: int) -> Result:
    """``fn(inputs, progress=True)`` in this process, or in ``processes`` > 1 DDP processes."""
    if processes <= 1:
        return fn(inputs, progress=True)
    return launch(fn, inputs, processes)


def launch(fn: Callable[..., Result], inputs: Any, processes: int) -> Result:
    """Run ``fn(inputs, progress=...)`` in ``processes`` processes; rank 0's return value."""
    if processes < 2:
        raise ValueError(f"launch needs at least 2 processes, got {processes}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        start_method="spawn",
    )
    results = elastic_launch(config, _worker)(fn, inputs)
    return results[0]
