"""The toy world's own CLIP: created, pretrained on the captioned set and checked zero-shot."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import open_clip
import pandas as pd
import torch

from semples.checkpoints import scratch_checkpoint
from semples.clip.model import FrozenClip
from semples.clip.pretrain import PretrainConfig, pretrain_clip
from semples.clip.registry import TOY_CLIP
from semples.clip.zero_shot import toy_zero_shot_report
from semples.data.images import read_rgb
from semples.data.toy_world import ToyWorldConfig
from semples.training import distributed


def pretrain_toy_clip(
    caption_index: pd.DataFrame,
    world: ToyWorldConfig,
    config: PretrainConfig,
    zero_shot_images: int,
    checkpoint_dir: str | None = None,
    processes: int = 1,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    """Pretrain the toy CLIP on the captioned scenes; its weights (open_clip state dict), the
    loss history and its zero-shot accuracy on ``zero_shot_images`` held-out scenes of
    ``world`` (object and context names).

    Training runs in ``processes`` DDP processes when above 1, and resumes from its epoch
    checkpoint in ``checkpoint_dir`` after an interruption (deleted once training ends).
    """
    if caption_index.empty:
        raise ValueError(
            "the caption index is empty: the toy CLIP needs the toy world's captioned set"
        )
    checkpoint = scratch_checkpoint(
        checkpoint_dir, "toy_clip", config=asdict(config), images=list(caption_index["id"]),
        captions=list(caption_index["caption"]),
    )  # fmt: skip
    pairs = (list(caption_index["image_path"]), list(caption_index["caption"]))
    state, history = distributed.launched(_pretrained, (pairs, config, checkpoint), processes)
    model = open_clip.create_model(TOY_CLIP)
    model.load_state_dict(state)
    frozen = FrozenClip(model, TOY_CLIP)
    report = toy_zero_shot_report(
        frozen.encode_images, frozen.encode_texts, world, num_images=zero_shot_images
    )
    report["params"] = {"clip": TOY_CLIP, "pretraining": asdict(config)}
    return state, history, report


def _pretrained(
    inputs: tuple[tuple[list[str], list[str]], PretrainConfig, Path | None], progress: bool
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    (paths, captions), config, checkpoint = inputs
    torch.manual_seed(config.seed)
    model = open_clip.create_model(TOY_CLIP)
    images = [partial(read_rgb, path) for path in paths]
    tokenizer = open_clip.get_tokenizer(TOY_CLIP)
    history = pretrain_clip(model, tokenizer, images, captions, config, progress, checkpoint)
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}, history
