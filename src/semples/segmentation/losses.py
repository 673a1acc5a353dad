"""Class-balanced cross-entropy: the mean of the background CE and the foreground CE.

Pseudo masks are mostly background and noisy; with plain CE users report NaN or collapsed
training, and balancing the two groups is the known fix (METHOD.md, "Segmentation").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn


def balanced_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = 255, background: int = 0
) -> Tensor:
    """Mean CE over background pixels and mean CE over foreground pixels, averaged; a group with
    no pixel in the batch drops out, and a batch of ignored pixels only gives a zero loss."""
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    valid = labels != ignore_index
    groups = [valid & (labels == background), valid & (labels != background)]
    means = [per_pixel[group].mean() for group in groups if group.any()]
    if not means:
        return per_pixel.sum() * 0.0  # keeps the graph (DDP) and the dtype
    return torch.stack(means).mean()


@MODELS.register_module()
class BalancedCrossEntropyLoss(nn.Module):
    """MMSegmentation loss wrapper of :func:`balanced_cross_entropy`."""

    def __init__(self, loss_weight: float = 1.0, loss_name: str = "loss_balanced_ce") -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(
        self, cls_score: Tensor, label: Tensor, weight=None, ignore_index: int = 255, **kwargs
    ) -> Tensor:
        return self.loss_weight * balanced_cross_entropy(cls_score, label, ignore_index)

    @property
    def loss_name(self) -> str:
        return self._loss_name
