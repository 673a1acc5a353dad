"""The toy world's own CLIP: created, pretrained on the captioned set and checked zero-shot."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import open_clip
import pandas as pd
import torch

from semples.clip.model import FrozenClip
from semples.clip.pretrain import PretrainConfig, pretrain_clip
from semples.clip.registry import TOY_CLIP
from semples.clip.zero_shot import toy_zero_shot_report
from semples.data.images import read_rgb
from semples.data.toy_world import ToyWorldConfig


def pretrain_toy_clip(
    caption_index: pd.DataFrame, world: Mapping[str, Any], settings: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    """Pretrain the toy CLIP on the captioned scenes; its weights (open_clip state dict), the
    loss history and its zero-shot accuracy on held-out scenes (object and context names)."""
    if caption_index.empty:
        raise ValueError(
            "the caption index is empty: the toy CLIP needs the toy world's captioned set"
        )
    config = PretrainConfig(**settings["pretraining"])
    torch.manual_seed(config.seed)
    model = open_clip.create_model(TOY_CLIP)
    images = [partial(read_rgb, path) for path in caption_index["image_path"]]
    history = pretrain_clip(
        model, open_clip.get_tokenizer(TOY_CLIP), images, caption_index["caption"].tolist(), config
    )
    frozen = FrozenClip(model, TOY_CLIP)
    report = toy_zero_shot_report(
        frozen.encode_images, frozen.encode_texts, ToyWorldConfig(**world),
        num_images=settings["zero_shot_images"],
    )  # fmt: skip
    report["params"] = {"clip": TOY_CLIP, "pretraining": dict(settings["pretraining"])}
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return state, history, report
