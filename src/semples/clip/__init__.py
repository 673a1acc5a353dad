"""Frozen CLIP models (open_clip) and the prompt learner that feeds learned context vectors
through CLIP's own text path."""

from semples.clip.model import FrozenClip, class_text_features, load_clip, save_clip_weights
from semples.clip.prompts import PromptLearner
from semples.clip.registry import TOY_CLIP, register_model_configs

register_model_configs()

__all__ = [
    "TOY_CLIP",
    "FrozenClip",
    "PromptLearner",
    "class_text_features",
    "load_clip",
    "register_model_configs",
    "save_clip_weights",
]
