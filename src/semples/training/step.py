"""One optimiser step, after the finiteness check every training loop of the project makes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


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
