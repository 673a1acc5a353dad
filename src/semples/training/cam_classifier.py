"""Train a mask generator as a multi-label CAM classifier on image-level labels.

SemPLES does not start from scratch: the paper's generator is a trained WeakTr CAM network, and
CLIMS's starts from ImageNet weights. A random-init generator lacks that prior, and CLIP alone
is a poor teacher for it: on the toy world, free per-image masks optimised against the small CLIP
reach a higher match score (foreground cosine 0.80) than the true object (0.74) at IoU 0.10,
so a random generator learns CLIP's blind spots instead of objects. Global-average-pooled class
maps trained with binary cross-entropy (the classic CAM recipe) give it the prior first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, with_config
from torch import Tensor, nn
from torch.utils.data import DataLoader

from semples.data.images import LabelledImages
from semples.progress import progress_bar
from semples.training.config import check_budget
from semples.training.loop import cosine_lr, epoch_order
from semples.training.step import optimizer_step


# Unknown keys in its parameter section are errors (semples.parameters validates with it).
@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True)
class CamClassifierConfig:
    """Budget and optimiser of CAM-classifier training (AdamW, cosine decay, no warm-up)."""

    epochs: int = 5
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        check_budget(self)


def classification_logits(class_maps: Tensor) -> Tensor:
    """Image-level logits ``[B, K]``: the global average of each class map ``[B, K, h, w]``."""
    if class_maps.ndim != 4:
        raise ValueError(f"expected class maps [B, K, h, w], got {tuple(class_maps.shape)}")
    return class_maps.mean(dim=(2, 3))


def train_cam_classifier(
    generator: nn.Module,
    dataset: LabelledImages,
    config: CamClassifierConfig,
    device: torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train ``generator`` in place with multi-label BCE; return one history row per step."""
    device = device or torch.device("cpu")
    torch.manual_seed(config.seed)
    generator.to(device).train()
    optimizer = torch.optim.AdamW(
        [p for p in generator.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    per_epoch = math.ceil(len(dataset) / config.batch_size)
    total = min(config.epochs * per_epoch, config.max_steps or math.inf)
    history, step = [], 0
    with progress_bar(total=total, desc="CAM classifier", enabled=progress) as bar:
        for epoch in range(config.epochs):
            dataset.set_epoch(epoch)
            order = epoch_order(len(dataset), config.seed, epoch, rank=0, world=1)
            for images, labels, _ in DataLoader(dataset, config.batch_size, sampler=order):
                if step >= total:
                    break
                lr = cosine_lr(config.lr, step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits = classification_logits(generator(images.to(device)))
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(device).float())
                optimizer_step(optimizer, loss, lambda loss=loss, step=step: (
                    f"CAM classifier loss became {loss.item()} at step {step + 1}; lower lr"
                ))  # fmt: skip
                step += 1
                history.append({"epoch": epoch, "step": step, "lr": lr, "bce": loss.item()})
                bar.update()
                bar.set_postfix(bce=f"{loss.item():.3f}")
    return pd.DataFrame(history, columns=["epoch", "step", "lr", "bce"])
