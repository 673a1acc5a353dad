"""Contrastive pretraining of a small CLIP on captioned toy scenes.

A fresh machine has no CLIP weights, so the toy world's own CLIP is trained here with CLIP's
symmetric InfoNCE loss. SemPLES later feeds that CLIP images multiplied by soft masks, so the
training images are randomly dimmed and partly blacked out: a CLIP that has only seen whole,
bright scenes reads a masked image as "something dark" rather than as the object left in it.
Half the captions also get the full stop that SemPLES' prompts end with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, with_config

from semples.clip.model import encode_text_embeddings, eot_positions, preprocess_images
from semples.progress import progress_bar
from semples.training.step import optimizer_step

ImageSource = Callable[[], np.ndarray] | np.ndarray

_DIM_RANGE = (0.2, 0.8)
_OCCLUDED_AREA = (0.1, 0.4)
_MAX_LOGIT_SCALE = math.log(100.0)


# Unknown keys in its parameter section are errors (semples.parameters validates with it).
@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True)
class PretrainConfig:
    """Budget, optimiser and augmentation of contrastive pretraining.

    The defaults pretrain the toy CLIP on the default toy world's 3,000 captioned scenes in about
    two minutes on 2 CPU cores, to 93-96 % zero-shot object and 100 % context accuracy (3 seeds);
    batch 128 (lr 1e-3 or 2e-3) and lr 1.5e-3 at batch 64 reached only 87 % on objects.
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    seed: int = 0
    dim_prob: float = 0.3
    occlusion_prob: float = 0.3
    hflip: bool = True
    full_stop_prob: float = 0.5
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (InfoNCE needs negatives), got {self.batch_size}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("dim_prob", "occlusion_prob", "full_stop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be None or >= 1, got {self.max_steps}")


def augment_batch(
    images01: torch.Tensor, config: PretrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """Random flips, dimming and black rectangles: the look of images SemPLES will mask."""
    count, _, height, width = images01.shape
    if config.hflip:
        flip = torch.rand(count, generator=generator) < 0.5
        images01 = torch.where(flip[:, None, None, None], images01.flip(-1), images01)
    dim = torch.rand(count, generator=generator) < config.dim_prob
    low, high = _DIM_RANGE
    gain = torch.where(dim, low + (high - low) * torch.rand(count, generator=generator), 1.0)
    occluded = torch.rand(count, generator=generator) < config.occlusion_prob
    keep = ~(_random_rectangles(count, height, width, generator) & occluded[:, None, None])
    return images01 * gain[:, None, None, None] * keep[:, None].to(images01.dtype)


def _random_rectangles(
    count: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """(count, H, W) boolean masks of one axis-aligned rectangle each, 10-40 % of the image."""
    low, high = _OCCLUDED_AREA
    area = low + (high - low) * torch.rand(count, generator=generator)
    aspect = torch.exp((torch.rand(count, generator=generator) * 2.0 - 1.0) * math.log(2.0))
    rect_h = (torch.sqrt(area * aspect) * height).round().clamp(1, height)
    rect_w = (area * height * width / rect_h).round().clamp(1, width)
    top = (torch.rand(count, generator=generator) * (height - rect_h + 1)).floor()
    left = (torch.rand(count, generator=generator) * (width - rect_w + 1)).floor()
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + rect_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + rect_w)[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :]


def pretrain_clip(
    model: torch.nn.Module,
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    images: Sequence[ImageSource],
    captions: Sequence[str],
    config: PretrainConfig,
    progress: bool = True,
) -> pd.DataFrame:
    """Train ``model`` (an open_clip ``CLIP``) in place on (image, caption) pairs; return one
    history row per step."""
    if not isinstance(model, open_clip.CLIP):
        raise TypeError(f"pretrain_clip needs an open_clip CLIP, got {type(model).__name__}")
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images but {len(captions)} captions")
    if len(images) < 2:
        raise ValueError(f"contrastive pretraining needs at least 2 pairs, got {len(images)}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    pixels = _load_images(images)
    tokens = _caption_tokens(tokenizer, captions)
    batch_size = min(config.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    total = config.epochs * steps_per_epoch
    total = total if config.max_steps is None else min(total, config.max_steps)
    optimizer = _optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, config.warmup_steps, total)
    )
    was_training = model.training
    model.train()
    history = []
    with progress_bar(total=total, desc="CLIP pretraining", enabled=progress) as bar:
        for step in range(total):
            epoch = step // steps_per_epoch
            if step % steps_per_epoch == 0:
                order = torch.randperm(len(images), generator=generator)
            index = order[(step % steps_per_epoch) * batch_size :][:batch_size]
            images01 = pixels[index].permute(0, 3, 1, 2).float() / 255.0
            batch = preprocess_images(model, augment_batch(images01, config, generator))
            lr = optimizer.param_groups[0]["lr"]
            stop = torch.rand(len(index), generator=generator) < config.full_stop_prob
            texts = torch.where(stop[:, None], tokens[1][index], tokens[0][index])
            loss = _train_step(model, optimizer, batch, texts, step)
            schedule.step()
            history.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": lr,
                    "logit_scale": model.logit_scale.exp().item(),
                }
            )
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}")
    model.train(was_training)
    return pd.DataFrame(history, columns=["step", "epoch", "loss", "lr", "logit_scale"])


def _load_images(images: Sequence[ImageSource]) -> torch.Tensor:
    """All images as one uint8 (N, H, W, 3) tensor: loaded once, not once per epoch."""
    arrays = [np.asarray(image() if callable(image) else image) for image in images]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(f"images must all be H x W x 3 of one size, got shapes {sorted(shapes)}")
    if any(array.dtype != np.uint8 for array in arrays):
        raise ValueError("images must be uint8")
    return torch.from_numpy(np.stack(arrays))


def _caption_tokens(
    tokenizer: Callable[[Sequence[str]], torch.Tensor], captions: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens of every caption as written and ending with a full stop.

    SemPLES' prompts end with '.' ("a photo of a boat."), the toy captions do not; a CLIP that
    never saw the full stop scored 13 points lower zero-shot with it than without it.
    """
    stopped = [caption if caption.endswith(".") else caption + "." for caption in captions]
    return tokenizer(list(captions)), tokenizer(stopped)


def _optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW as CLIP uses it: no decay on gains, biases, embeddings' scale or the logit scale."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or "logit_scale" in name
        (no_decay if exempt else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def _train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    tokens: torch.Tensor,
    step: int,
) -> float:
    """One InfoNCE step; the logit scale is clamped at 100 afterwards, as open_clip does."""
    loss = clip_loss(model, images, tokens)
    optimizer_step(optimizer, loss, lambda: (
        f"CLIP pretraining loss became {loss.item()} at step {step}; lower the lr"
    ))  # fmt: skip
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, _MAX_LOGIT_SCALE)
    return loss.item()


def clip_loss(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: image i matches caption i, among all captions and images of the batch.

    Each distinct caption is encoded once: toy captions repeat a lot, and identical tokens give
    identical features, so the logits (and gradients) are those of encoding every row.
    """
    image_features = model.encode_image(images, normalize=True)
    unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    unique = unique[:, : int((unique != 0).nonzero()[:, 1].max()) + 1]  # padding (id 0) cut
    embeddings = model.token_embedding(unique)
    text_features = encode_text_embeddings(model, embeddings, eot_positions(model, unique))
    text_features = F.normalize(text_features, dim=-1)[inverse]
    logits = model.logit_scale.exp() * image_features @ text_features.T
    labels = torch.arange(len(images))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
