"""open_clip model configs that ship with the project (architectures as data, like open_clip's)."""

from __future__ import annotations

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).parent / "model_configs"
TOY_CLIP = "semples-toy-clip"
"""A 9 M-parameter CLIP for the 96 px toy world: ViT patch 12, width 192, 4 layers; text width
128, 4 layers. Pretrained by the ``pseudo_labels`` pipeline on the toy world's captioned set."""


def register_model_configs() -> None:
    """Make the project's configs known to ``open_clip.create_model`` (idempotent)."""
    if TOY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
