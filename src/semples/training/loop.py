"""The three SemPLES stages: their losses and their step on the shared training engine.

* Stage 1 (Segment-Label Matching) trains the mask generator S with L_match (+ area term).
* Stage 2 (Contrastive Prompt Learning) trains the background prompts with S frozen.
* Stage 3 (Prompt-guided Semantic Refinement) trains S with L_match + lambda L_refine against
  fixed background text features (learned prompts, or hand-written texts for the control).

Efficient by construction: the positive (image, class) pairs of a batch go through CLIP's image
encoder in one batched call (foregrounds and backgrounds together); label text features come in
computed once per run; prompt features are computed once per step (stage 2) or once per run
(stage 3); stage 3 reuses the foreground features for L_match and L_refine.

Ordering, schedule, checkpoint and resume, DDP and progress are the engine's
(:mod:`semples.training.engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from semples.clip.model import FrozenClip
from semples.clip.prompts import PromptLearner
from semples.data.images import LabelledImages
from semples.losses import area_loss, match_loss, prompt_loss, refine_loss
from semples.models import masks_for_pairs
from semples.training import engine
from semples.training.config import StageConfig


@dataclass
class StageModels:
    """What a stage works on. ``background_features`` (K x D) are the fixed background texts
    of stage 3: the learned prompts' features, or hand-written texts for the control."""

    clip: FrozenClip
    generator: nn.Module
    prompts: PromptLearner
    label_features: Tensor
    background_features: Tensor | None = None


def positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(batch index, class index) of every positive label of the batch."""
    return labels.nonzero(as_tuple=True)


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
    with torch.no_grad() if frozen_generator else torch.enable_grad():
        with engine.autocast(images.device, config.amp):
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
            use_text_term=config.prompt_text_term, similarity_floor=config.similarity_floor,
        )  # fmt: skip
        return {"total": terms.total, **terms.parts}

    pair_count = len(batch_index)
    features = models.clip.encode_images(
        torch.cat([soft_masks * pair_images, (1 - soft_masks) * pair_images])
    )
    foreground, background = features[:pair_count], features[pair_count:]
    terms = match_loss(
        foreground, background, label_features, config.lambda_b, config.similarity_floor
    )
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


def train_stage(
    config: StageConfig,
    models: StageModels,
    dataset: LabelledImages,
    checkpoint_path: Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Train one stage in place with :func:`~semples.training.engine.fit`; returns the loss
    history (one row per step). With ``checkpoint_path``, the state after every epoch is saved
    there, an existing checkpoint is resumed from and the finished run removes it (the caller
    puts the config's fingerprint in the path).
    """
    device = models.label_features.device
    module = _trainable(config, models)
    models.generator.train(config.stage != 2 and config.trainable == "all")

    def step(trained: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
        images, labels, _ = batch
        generator = trained if config.stage != 2 else models.generator
        prompts = trained if config.stage == 2 else models.prompts
        return stage_losses(
            config, models, images.to(device, non_blocking=True),
            labels.to(device, non_blocking=True), generator, prompts,
        )  # fmt: skip

    task = engine.Task(
        name=f"stage {config.stage}",
        module=module,
        optimizer=engine.adamw(module, config.effective_lr, config.weight_decay),
        step=step,
        lr=partial(engine.cosine_lr, config.effective_lr),
        checkpointed={"generator": models.generator, "prompts": models.prompts},
        tags={"stage": config.stage},
    )
    schedule = engine.Schedule(
        config.epochs, config.batch_size, config.seed, config.max_steps,
        num_workers=config.num_workers,
    )  # fmt: skip
    return engine.fit(task, dataset, schedule, checkpoint_path, progress, on_epoch_end,
                      pin_memory=device.type == "cuda")  # fmt: skip
