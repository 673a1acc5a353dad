"""Zero-shot checks of a CLIP: does it know the toy world's object and context names?

SemPLES relies on CLIP telling "a photo of a boat" from "a photo of water", and its problem is
that CLIP also confuses them (the co-occurrence bias). Both are measured here on held-out toy
scenes. The encoders are plain callables, so any CLIP wrapper can be checked the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semples.clip.model import preprocess_images
from semples.data.classes import indefinite_article
from semples.data.toy_world import (
    CAPTION_PREFIX,
    TOY_CLASSES,
    TOY_CONTEXTS,
    ToyWorldConfig,
    captioned_scene,
    on_black,
    render_scene,
)

ImageEncoder = Callable[[torch.Tensor], torch.Tensor]
TextEncoder = Callable[[Sequence[str]], torch.Tensor]

_HELD_OUT_SPLIT = "zero_shot"


def object_prompt(name: str) -> str:
    """'a photo of a boat.': the toy captions' article ('an aeroplane') and the full stop of
    SemPLES' prompts (pretraining shows captions with and without it)."""
    return f"{CAPTION_PREFIX}{indefinite_article(name)} {name}."


def context_prompt(context: str) -> str:
    """'a photo of water.': contexts are captioned without an article."""
    return f"{CAPTION_PREFIX}{context}."


def open_clip_encoders(
    model: torch.nn.Module, tokenizer: Callable[[Sequence[str]], torch.Tensor]
) -> tuple[ImageEncoder, TextEncoder]:
    """Encoders of an open_clip model fed exactly as in pretraining."""

    def encode_images(images01: torch.Tensor) -> torch.Tensor:
        return model.encode_image(preprocess_images(model, images01))

    def encode_texts(prompts: Sequence[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(list(prompts)))

    return encode_images, encode_texts


def zero_shot_accuracy(
    encode_images: ImageEncoder,
    encode_texts: TextEncoder,
    images: Sequence[np.ndarray],
    targets: Sequence[int],
    prompts: Sequence[str],
    batch_size: int = 256,
) -> float:
    """Share of images whose most cosine-similar prompt is ``prompts[target]``."""
    if len(images) != len(targets):
        raise ValueError(f"got {len(images)} images but {len(targets)} targets")
    if len(images) == 0:
        raise ValueError("zero_shot_accuracy needs at least one image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    targets = np.asarray(targets)
    if targets.min() < 0 or targets.max() >= len(prompts):
        raise ValueError(f"targets must index the {len(prompts)} prompts, got {targets.tolist()}")
    predictions = _predict(encode_images, encode_texts, images, prompts, batch_size)
    return float(np.mean(predictions == targets))


def _predict(
    encode_images: ImageEncoder,
    encode_texts: TextEncoder,
    images: Sequence[np.ndarray],
    prompts: Sequence[str],
    batch_size: int,
) -> np.ndarray:
    """Index of the best prompt for every image (cosine similarity)."""
    with torch.no_grad():
        text = F.normalize(encode_texts(prompts).float(), dim=-1)
        best = []
        for start in range(0, len(images), batch_size):
            features = encode_images(_to_tensor01(images[start : start + batch_size]))
            best.append((F.normalize(features.float(), dim=-1) @ text.T).argmax(dim=1))
    return torch.cat(best).cpu().numpy()


def _to_tensor01(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] from H x W x 3 arrays (uint8, or float already in [0, 1])."""
    batch = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
    batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
    return batch.permute(0, 3, 1, 2)


def toy_zero_shot_report(
    encode_images: ImageEncoder,
    encode_texts: TextEncoder,
    world: ToyWorldConfig,
    num_images: int = 300,
) -> dict:
    """Object accuracy, context accuracy and co-occurrence bias on scenes never trained on.

    Object scenes come from a split of their own (one object each, context as often as in the
    world); context-only scenes from captioned indices past the captioned training set.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    object_images, object_targets = _single_object_scenes(world, num_images)
    context_images, context_owners = _context_only_scenes(world, num_images)
    object_prompts = [object_prompt(name) for name in TOY_CLASSES]
    context_prompts = [context_prompt(TOY_CONTEXTS[name]) for name in TOY_CLASSES]
    return {
        "object_accuracy": zero_shot_accuracy(
            encode_images, encode_texts, object_images, object_targets, object_prompts
        ),
        "context_accuracy": zero_shot_accuracy(
            encode_images, encode_texts, context_images, context_owners, context_prompts
        ),
        "context_to_object_bias": zero_shot_accuracy(
            encode_images, encode_texts, context_images, context_owners, object_prompts
        ),
        "num_object_images": len(object_images),
        "num_context_images": len(context_images),
        "cutout_margins": cutout_margins(encode_images, encode_texts, world, num_images),
    }


def placed_object_scenes(world: ToyWorldConfig, count: int) -> list:
    """Held-out scenes of one object, always on its context."""
    placed = _one_object_world(world, co_occurrence=1.0)
    return [render_scene(placed, _HELD_OUT_SPLIT, index) for index in range(count)]


def _one_object_world(world: ToyWorldConfig, **changes) -> ToyWorldConfig:
    """``world`` with exactly one object per scene (its object-count weights dropped)."""
    return dataclasses.replace(
        world, min_objects=1, max_objects=1, object_count_weights=(), **changes
    )


def cutout_margins(
    encode_images: ImageEncoder, encode_texts: TextEncoder, world: ToyWorldConfig, count: int
) -> dict[str, dict[str, float]]:
    """Per class, mean cosines of what SemPLES shows CLIP: the object alone on black and its
    context alone on black (object pixels black), with the class text and the context text.

    SemPLES can only move a mask off the context if CLIP scores the object closer to its class
    text than the context (``object_margin`` > 0) and the context closer to its own text than to
    the class's (``context_margin`` > 0). Held-out one-object scenes drawn on their context.
    """
    scenes = placed_object_scenes(world, count)
    classes = np.array([scene.labels[0] for scene in scenes])
    objects = [on_black(scene.image, scene.mask > 0) for scene in scenes]
    contexts = [on_black(scene.image, scene.context > 0) for scene in scenes]
    with torch.no_grad():
        texts = F.normalize(encode_texts(
            [object_prompt(name) for name in TOY_CLASSES]
            + [context_prompt(TOY_CONTEXTS[name]) for name in TOY_CLASSES]
        ).float(), dim=-1)  # fmt: skip
        cosine = {
            name: F.normalize(encode_images(_to_tensor01(images)).float(), dim=-1) @ texts.T
            for name, images in (("object", objects), ("context", contexts))
        }
    margins = {}
    for k, name in enumerate(TOY_CLASSES):
        rows = torch.from_numpy(classes == k)
        if not rows.any():
            continue
        mean = {key: value[rows].mean(dim=0) for key, value in cosine.items()}
        entry = {
            "object_class_text": mean["object"][k].item(),
            "object_context_text": mean["object"][len(TOY_CLASSES) + k].item(),
            "context_class_text": mean["context"][k].item(),
            "context_context_text": mean["context"][len(TOY_CLASSES) + k].item(),
        }
        entry["object_margin"] = entry["object_class_text"] - entry["context_class_text"]
        entry["context_margin"] = entry["context_context_text"] - entry["context_class_text"]
        margins[name] = {key: round(value, 4) for key, value in entry.items()}
    return margins


def _single_object_scenes(world: ToyWorldConfig, count: int) -> tuple[list[np.ndarray], list[int]]:
    """Scenes of exactly one object: the world's own one-object scenes, in a held-out split."""
    single = _one_object_world(world)
    scenes = [render_scene(single, _HELD_OUT_SPLIT, index) for index in range(count)]
    return [scene.image for scene in scenes], [scene.labels[0] for scene in scenes]


def _context_only_scenes(world: ToyWorldConfig, count: int) -> tuple[list[np.ndarray], list[int]]:
    """Context-only captioned scenes past the training indices; target = the context's owner.

    With ``context_only_fraction=1`` every captioned index draws a context-only scene from the
    same distribution as the world's, so none has to be rendered and thrown away.
    """
    only = dataclasses.replace(world, context_only_fraction=1.0)
    owners = {context: TOY_CLASSES.index(name) for name, context in TOY_CONTEXTS.items()}
    scenes = [captioned_scene(only, world.num_captioned + index)[0] for index in range(count)]
    return [scene.image for scene in scenes], [owners[scene.contexts[0]] for scene in scenes]
