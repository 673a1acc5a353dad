"""Train a mask generator as a multi-label CAM classifier on image-level labels.

SemPLES does not start from scratch: the paper's generator is a trained WeakTr CAM network, and
CLIMS's starts from ImageNet weights. A random-init generator lacks that prior, and CLIP alone
is a poor teacher for it: on the toy world, free per-image masks optimised against the small CLIP
reach a higher match score (foreground cosine 0.80) than the true object (0.74) at IoU 0.10,
so a random generator learns CLIP's blind spots instead of objects. Global-average-pooled class
maps trained with binary cross-entropy (the classic CAM recipe) give it the prior first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, with_config
from torch import Tensor, nn

from semples.data.images import LabelledImages
from semples.training import engine
from semples.training.config import check_budget


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
    checkpoint_path: Path | None = None,
) -> pd.DataFrame:
    """Train ``generator`` in place with multi-label BCE on the shared engine (resumable from
    ``checkpoint_path``, DDP when run in a process group); return one history row per step."""
    device = device or torch.device("cpu")
    generator.to(device).train()

    def step(trained: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
        images, labels, _ = batch
        logits = classification_logits(trained(images.to(device)))
        return {"bce": F.binary_cross_entropy_with_logits(logits, labels.to(device).float())}

    task = engine.Task(
        name="CAM classifier",
        module=generator,
        optimizer=engine.adamw(generator, config.lr, config.weight_decay),
        step=step,
        lr=partial(engine.cosine_lr, config.lr),
        checkpointed={"generator": generator},
        objective="bce",
    )
    schedule = engine.Schedule(config.epochs, config.batch_size, config.seed, config.max_steps)
    return engine.fit(task, dataset, schedule, checkpoint_path, progress)
