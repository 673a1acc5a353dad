"""The one training engine: what every model trained here shares, written once.

The SemPLES stages, the CAM classifier, IRNet and the toy CLIP train the same way and differ
only in their step (one batch in, named loss terms out) and their modules. :func:`fit` does the
rest: the seeded epoch order dealt across DDP processes, the learning rate as a function of the
step, the finiteness check before a step can reach the weights, the per-epoch atomic checkpoint
and the resume from it, progress (a bar on a terminal, log lines without one) and the history,
one row per step with the terms averaged over processes. Data order and augmentation are
functions of (seed, epoch, item) or live in checkpointed state, so a resumed run ends exactly
where the uninterrupted one does.

Why not MMEngine's ``Runner`` (which trains DeepLabV2 here): it owns the data loader, the
optimiser wrapper, the schedulers and the checkpoint format, and these loops need what it does
not give simply: an epoch order that is a function of (seed, epoch) or of checkpointed random
state (the toy CLIP's single generator, kept bit for bit from before this engine), several
named loss terms per step averaged over processes into a history that Kedro saves, and
checkpoints that are plain dicts of tensors, loadable with ``torch.load(weights_only=True)``.
Its per-step overhead also needed tuning to reach 1.05 over the irreducible passes
(``benchmarks/step_overhead.py``); this engine adds a few Python operations per step.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from semples.checkpoints import load_state, save_atomic
from semples.progress import progress_bar
from semples.training import distributed

logger = logging.getLogger(__name__)

Step = Callable[[nn.Module, Any], dict[str, Tensor]]


@dataclass(frozen=True)
class Schedule:
    """How much to train and in what order: ``epochs`` passes in batches of ``batch_size``
    (per process), capped at ``max_steps``; ``drop_last`` keeps whole batches only (InfoNCE)."""

    epochs: int
    batch_size: int
    seed: int
    max_steps: int | None = None
    drop_last: bool = False
    num_workers: int = 0


@dataclass
class Task:
    """One model's training, less what :func:`fit` shares.

    ``step(module, batch)`` returns the loss terms of one batch; ``objective`` names the one
    minimised. ``module`` is what trains: ``step`` gets it, or its DDP wrapper when distributed.
    ``lr(step, total)`` is the learning rate of a step, times ``lr_multipliers`` per parameter
    group. ``checkpointed`` (name -> object with ``state_dict`` / ``load_state_dict``) is what
    the checkpoint holds besides the optimiser. ``after_step`` runs after each optimiser step
    and its values join the history row (CLIP's logit-scale clamp); ``tags`` are constant
    columns of every row; ``order(epoch)`` replaces the seeded permutation of the items.
    """

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    step: Step
    lr: Callable[[int, int], float]
    checkpointed: Mapping[str, Any]
    objective: str = "total"
    lr_multipliers: Sequence[float] | None = None
    after_step: Callable[[], dict[str, float]] | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    order: Callable[[int], Sequence[int]] | None = None


class RandomState:
    """A ``torch.Generator`` as a checkpointable object (its state is a byte tensor)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.generator.set_state(state["state"])


def permutation(num_items: int, seed: int, epoch: int) -> list[int]:
    """The items of an epoch in a seeded order, a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_items, generator=generator).tolist()


def deal(order: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's share of an epoch's order, truncated to a multiple of ``world`` so that
    every process runs the same number of steps."""
    usable = len(order) - len(order) % world if world > 1 else len(order)
    return list(order[rank:usable:world])


def steps_per_epoch(num_items: int, batch_size: int, world: int, drop_last: bool = False) -> int:
    per_process = num_items // world if world > 1 else num_items
    return per_process // batch_size if drop_last else math.ceil(per_process / batch_size)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay to 0 without warm-up (reference code); a function of the step only."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))


def adamw(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the parameters of ``module`` that train (a frozen trunk's are left out)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; nothing on the CPU (fp32 there)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def optimizer_step(
    optimizer: torch.optim.Optimizer, loss: Tensor, failure: Callable[[], str]
) -> None:
    """Backward and step on ``loss``; a NaN or infinite loss raises ``FloatingPointError`` with
    the message ``failure()`` instead (called only then), before it can reach the weights."""
    if not torch.isfinite(loss):
        raise FloatingPointError(failure())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def fit(
    task: Task,
    dataset: Dataset,
    schedule: Schedule,
    checkpoint_path: Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    pin_memory: bool = False,
) -> pd.DataFrame:
    """Train ``task`` on ``dataset``; return the history, one row per step.

    Torch's global generator is seeded with ``schedule.seed`` first. With ``checkpoint_path``
    the state after every epoch is saved there (by rank 0), an existing checkpoint is resumed
    from, and the checkpoint is removed once training has finished (it is scratch: the result
    is the caller's); the caller puts the run's fingerprint in the path, so a changed run never
    resumes another's. ``dataset.set_epoch(epoch)``, when it has one, is called before each
    epoch (augmentation seeded by epoch).
    """
    torch.manual_seed(schedule.seed)
    rank, world = distributed.rank(), distributed.world_size()
    per_epoch = steps_per_epoch(len(dataset), schedule.batch_size, world, schedule.drop_last)
    if per_epoch < 1:
        raise ValueError(
            f"{task.name}: {len(dataset)} items make no whole batch of {schedule.batch_size} "
            f"per process ({world} processes)"
        )
    total = min(schedule.epochs * per_epoch, schedule.max_steps or math.inf)
    multipliers = task.lr_multipliers or [1.0] * len(task.optimizer.param_groups)
    start_epoch, step, history = 0, 0, []
    if checkpoint_path is not None and checkpoint_path.is_file():
        start_epoch, step, history = _resume(task, checkpoint_path)
    trained = DistributedDataParallel(task.module) if world > 1 else task.module
    bar = progress_bar(total=total, initial=step, desc=task.name, enabled=progress and rank == 0)
    with bar:
        for epoch in range(start_epoch, schedule.epochs):
            if step >= total:
                break
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            order = (task.order or partial(permutation, len(dataset), schedule.seed))(epoch)
            loader = DataLoader(
                dataset, batch_size=schedule.batch_size, sampler=deal(order, rank, world),
                drop_last=schedule.drop_last, num_workers=schedule.num_workers,
                pin_memory=pin_memory,
            )  # fmt: skip
            for batch in loader:
                if step >= total:
                    break
                lr = task.lr(step, total)
                for group, multiplier in zip(task.optimizer.param_groups, multipliers, strict=True):
                    group["lr"] = lr * multiplier
                terms = task.step(trained, batch)
                optimizer_step(task.optimizer, terms[task.objective],
                               partial(_failure, task.name, terms, step))  # fmt: skip
                step += 1
                row = _averaged({name: value.detach() for name, value in terms.items()}, world)
                if task.after_step is not None:
                    row.update(task.after_step())
                history.append({**task.tags, "epoch": epoch, "step": step, "lr": lr, **row})
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items()}, refresh=False)
            if checkpoint_path is not None and rank == 0:
                save_atomic(_checkpoint(task, epoch, step, history), checkpoint_path)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    if checkpoint_path is not None and rank == 0:
        checkpoint_path.unlink(missing_ok=True)
    return pd.DataFrame(history)


def _checkpoint(task: Task, epoch: int, step: int, history: list[dict]) -> dict:
    return {
        **{name: part.state_dict() for name, part in task.checkpointed.items()},
        "optimizer": task.optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "history": history,
    }


def _resume(task: Task, path: Path) -> tuple[int, int, list[dict]]:
    state = load_state(path, map_location=next(task.module.parameters()).device)
    for name, part in task.checkpointed.items():
        part.load_state_dict(state[name])
    task.optimizer.load_state_dict(state["optimizer"])
    logger.info("%s resumes after epoch %d from %s", task.name, state["epoch"] + 1, path)
    return state["epoch"] + 1, state["step"], state["history"]


def _failure(name: str, terms: dict[str, Tensor], step: int) -> str:
    values = ", ".join(f"{term}={value.item():.4g}" for term, value in terms.items())
    return f"{name}: non-finite loss at step {step + 1} ({values}); lower the lr"


def _averaged(terms: dict[str, Tensor], world: int) -> dict[str, float]:
    """Loss terms averaged over processes (one synchronisation), for history and progress."""
    names = list(terms)
    values = torch.stack([terms[name].float() for name in names])
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip(names, values.tolist()))
