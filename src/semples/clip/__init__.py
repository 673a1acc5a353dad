"""Frozen CLIP models (open_clip) and the prompt learner that feeds learned context vectors
through CLIP's own text path."""

from semples.clip.registry import TOY_CLIP, register_model_configs

register_model_configs()

__all__ = ["TOY_CLIP", "register_model_configs"]
