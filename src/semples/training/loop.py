"""One training loop for the three SemPLES stages.

* Stage 1 (Segment-Label Matching) trains the mask generator S with L_match (+ area term).
* Stage 2 (Contrastive Prompt Learning) trains the background prompts with S frozen.
* Stage 3 (Prompt-guided Semantic Refinement) trains S with L_match + lambda L_refine against
  fixed background text features (learned prompts, or hand-written texts for the control).

Efficient by construction: the positive (image, class) pairs of a batch go through CLIP's image
encoder in one batched call (foregrounds and backgrounds together); label text features come in
computed once per run; prompt features are computed once per step (stage 2) or once per run
(stage 3); stage 3 reuses the foreground features for L_match and L_refine.

A checkpoint is written atomically after every epoch; a run that finds the checkpoint of the
same configuration resumes from it. Data order and augmentation are functions of (seed, epoch,
item), so the resumed run ends exactly where the uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from semples.checkpoints import load_state, save_atomic
from semples.clip.model import FrozenClip
from semples.clip.prompts import PromptLearner
from semples.data.images import LabelledImages
from semples.losses import area_loss, match_loss, prompt_loss, refine_loss
from semples.models import masks_for_pairs
from semples.progress import progress_bar
from semples.training import distributed
from semples.training.config import StageConfig
from semples.training.step import optimizer_step

logger = logging.getLogger(__name__)


@dataclass
class StageModels:
    """What a stage works on. ``background_features`` (K x D) are the fixed background texts
    of stage 3: the learned prompts' features, or hand-written texts for the control."""

    clip: FrozenClip
    generator: nn.Module
    prompts: PromptLearner
    label_features: Tensor
    background_features: Tensor | None = None


def epoch_order(num_items: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This process's items of an epoch: a seeded permutation, dealt out across processes
    (truncated to a multiple of ``world`` so every process runs the same number of steps)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_items, generator=generator).tolist()
    usable = num_items - num_items % world if world > 1 else num_items
    return order[rank:usable:world]


def steps_per_epoch(num_items: int, batch_size: int, world: int) -> int:
    per_process = num_items // world if world > 1 else num_items
    return math.ceil(per_process / batch_size)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay to 0 without warm-up (reference code); a function of the step only."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))


def positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(batch index, class index) of every positive label of the batch."""
    return labels.nonzero(as_tuple=True)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def stage_losses(
    config: StageConfig,
    models: StageModels,
    images: Tensor,
    labels: Tensor,
    generator: nn.Module,
    prompts: nn.Module,
) -> dict[str, Tensor]:
    """Every loss term of one step of ``config.stage``; ``"total"`` is what is minimised.

    ``generator`` / ``prompts`` are the modules to call (DDP wrappers when distributed).
    """
    batch_index, class_index = positive_pairs(labels)
    frozen_generator = config.stage == 2
    with torch.no_grad() if frozen_generator else contextlib.nullcontext():
        with _autocast(images.device, config.amp):
            logits = generator(images)
        masks = masks_for_pairs(
            logits.float(), batch_index, class_index, images.shape[-2:],
            eps=config.mask_eps, activation=config.mask_activation,
        )  # fmt: skip
    pair_images = images[batch_index]
    soft_masks = masks.unsqueeze(1)
    label_features = models.label_features[class_index]

    if config.stage == 2:
        with torch.no_grad():
            background = models.clip.encode_images((1 - soft_masks) * pair_images)
        prompt_features = prompts()[class_index]
        terms = prompt_loss(
            prompt_features, background, label_features, config.lambda_t,
            text_term=config.text_term, image_term=config.prompt_image_term,
            use_text_term=config.prompt_text_term,
        )  # fmt: skip
        return {"total": terms.total, **terms.parts}

    pair_count = len(batch_index)
    features = models.clip.encode_images(
        torch.cat([soft_masks * pair_images, (1 - soft_masks) * pair_images])
    )
    foreground, background = features[:pair_count], features[pair_count:]
    terms = match_loss(foreground, background, label_features, config.lambda_b)
    losses = {"total": terms.total, **terms.parts}
    if config.area_weight:
        losses["area"] = area_loss(masks)
        losses["total"] = losses["total"] + config.area_weight * losses["area"]
    if config.stage == 3 and config.refine:
        losses["refine"] = refine_loss(foreground, models.background_features[class_index])
        losses["total"] = losses["total"] + config.lam * losses["refine"]
    return losses


def _trainable(config: StageConfig, models: StageModels) -> nn.Module:
    """The module the stage trains: the prompts (stage 2) or S. With ``trainable: head`` S's
    trunk gets no gradient (and keeps its batch-norm statistics), only its 1x1 classifier."""
    if config.stage == 2:
        return models.prompts
    if config.trainable == "head":
        models.generator.backbone.requires_grad_(False)
    return models.generator


def _checkpoint_state(models: StageModels, optimizer, epoch: int, step: int, history) -> dict:
    return {
        "epoch": epoch,
        "step": step,
        "generator": models.generator.state_dict(),
        "prompts": models.prompts.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
    }


def train_stage(
    config: StageConfig,
    models: StageModels,
    dataset: LabelledImages,
    checkpoint_path: Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Train one stage in place; returns the loss history (one row per step).

    With ``checkpoint_path``, the state after every epoch is saved there and an existing
    checkpoint is resumed from (the caller puts the config's fingerprint in the path).
    """
    device = models.label_features.device
    rank, world = distributed.rank(), distributed.world_size()
    torch.manual_seed(config.seed)
    module = _trainable(config, models)
    models.generator.train(config.stage != 2 and config.trainable == "all")
    optimizer = torch.optim.AdamW(
        [p for p in module.parameters() if p.requires_grad],
        lr=config.effective_lr,
        weight_decay=config.weight_decay,
    )
    per_epoch = steps_per_epoch(len(dataset), config.batch_size, world)
    total_steps = min(config.epochs * per_epoch, config.max_steps or math.inf)
    history: list[dict] = []
    start_epoch, step = 0, 0
    if checkpoint_path is not None and checkpoint_path.is_file():
        state = load_state(checkpoint_path, map_location=device)
        models.generator.load_state_dict(state["generator"])
        models.prompts.load_state_dict(state["prompts"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], state["history"]
        logger.info(
            "Stage %d resumes after epoch %d from %s", config.stage, start_epoch, checkpoint_path
        )

    wrapped = DistributedDataParallel(module) if world > 1 else module
    generator = wrapped if config.stage != 2 else models.generator
    prompts = wrapped if config.stage == 2 else models.prompts
    bar = progress_bar(total=total_steps, initial=step, desc=f"stage {config.stage}",
                       enabled=progress and rank == 0)  # fmt: skip
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset, batch_size=config.batch_size,
            sampler=epoch_order(len(dataset), config.seed, epoch, rank, world),
            num_workers=config.num_workers, pin_memory=device.type == "cuda",
        )  # fmt: skip
        for images, labels, _ in loader:
            if step >= total_steps:
                break
            lr = cosine_lr(config.effective_lr, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses = stage_losses(
                config, models, images.to(device, non_blocking=True),
                labels.to(device, non_blocking=True), generator, prompts,
            )  # fmt: skip
            failure = partial(_non_finite, losses, config.stage, step)
            optimizer_step(optimizer, losses["total"], failure)
            step += 1
            row = _reduced({name: value.detach() for name, value in losses.items()}, world)
            history.append({"stage": config.stage, "epoch": epoch, "step": step, "lr": lr, **row})
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in row.items()}, refresh=False)
        if checkpoint_path is not None and rank == 0:
            save_atomic(_checkpoint_state(models, optimizer, epoch, step, history), checkpoint_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    return pd.DataFrame(history)


def _non_finite(losses: dict[str, Tensor], stage: int, step: int) -> str:
    values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
    return f"stage {stage}: non-finite loss at step {step + 1} ({values})"


def _reduced(losses: dict[str, Tensor], world: int) -> dict[str, float]:
    """Loss values averaged over processes, for the history and the progress bar."""
    names = sorted(losses)
    values = torch.stack([losses[name].float() for name in names])
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip(names, values.tolist()))
