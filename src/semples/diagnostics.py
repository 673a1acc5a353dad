"""What the SemPLES objective prefers: its terms scored on chosen masks instead of learned ones.

A stage can only improve the CAMs if its objective is lowest at the object. Feeding CLIP the
ground-truth mask, blurred / eroded / dilated copies of it, the object with its context, the
context alone, the whole image and the masks a generator actually produces, and scoring every
term on each, says whether the optimum is the object (then the optimisation is to blame when a
stage does not help) or something else (then the world, the frozen CLIP or the
parameterisation is). Evaluation only: ground truth never reaches training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import Tensor

from semples.clip.model import FrozenClip
from semples.losses import area_loss, clamped_similarity, match_loss, refine_loss

MaskVariant = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


@dataclass(frozen=True)
class Pair:
    """One positive (image, class) pair: the image in [0, 1] (3 x H x W), the class (0-based),
    its ground-truth object mask, where the world keeps one its context mask (H x W bool), and
    the number of objects in its scene where known."""

    image: Tensor
    class_index: int
    object_mask: np.ndarray
    context_mask: np.ndarray | None = None
    scene_objects: int | None = None


def _disk(radius: int) -> np.ndarray:
    grid = np.arange(-radius, radius + 1)
    return grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2


def dilated(radius: int) -> MaskVariant:
    return lambda mask, _: ndimage.binary_dilation(mask, _disk(radius)).astype(np.float32)


def eroded(radius: int) -> MaskVariant:
    return lambda mask, _: ndimage.binary_erosion(mask, _disk(radius)).astype(np.float32)


def blurred(sigma: float) -> MaskVariant:
    def variant(mask: np.ndarray, _: np.ndarray | None) -> np.ndarray:
        soft = ndimage.gaussian_filter(mask.astype(np.float32), sigma)
        return soft / max(float(soft.max()), 1e-6)

    return variant


def _with_context(mask: np.ndarray, context: np.ndarray | None) -> np.ndarray:
    return (mask | (context if context is not None else False)).astype(np.float32)


def with_faint_context(level: float) -> MaskVariant:
    """The object at 1 and its context at `level`: does the objective charge a dim context floor?"""

    def variant(mask: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        floor = context.astype(np.float32) * level if context is not None else 0.0
        return np.maximum(mask.astype(np.float32), floor)

    return variant


def _context_only(mask: np.ndarray, context: np.ndarray | None) -> np.ndarray:
    return (context if context is not None else np.zeros_like(mask)).astype(np.float32)


GROUND_TRUTH_VARIANTS: dict[str, MaskVariant] = {
    "ground truth": lambda mask, _: mask.astype(np.float32),
    "GT blurred (sigma 2 px)": blurred(2.0),
    "GT eroded 2 px": eroded(2),
    "GT dilated 4 px": dilated(4),
    "GT dilated 12 px": dilated(12),
    "GT dilated 24 px": dilated(24),
    "GT + its context": _with_context,
    "GT + its context at 0.2": with_faint_context(0.2),
    "context alone": _context_only,
    "whole image": lambda mask, _: np.ones_like(mask, dtype=np.float32),
    # Controls: the optimum must beat an empty mask and the object's own shape put elsewhere.
    "nothing (empty mask)": lambda mask, _: np.zeros_like(mask, dtype=np.float32),
    "GT shape moved by half the image": lambda mask, _: np.roll(
        mask, (mask.shape[0] // 2, mask.shape[1] // 2), axis=(0, 1)
    ).astype(np.float32),
}


def soft_iou(masks: Tensor, truth: Tensor) -> Tensor:
    """Mean soft IoU sum(min) / sum(max) of masks [P, H, W] in [0, 1] with binary truth."""
    inter = torch.minimum(masks, truth).sum(dim=(1, 2))
    union = torch.maximum(masks, truth).sum(dim=(1, 2)).clamp_min(1e-6)
    return (inter / union).mean()


@torch.no_grad()
def score_masks(
    clip: FrozenClip,
    pairs: Sequence[Pair],
    masks: Tensor,
    label_features: Tensor,
    background_features: Tensor | None,
    lambda_b: float,
    area_weight: float,
    lam: float,
    similarity_floor: float | None = None,
) -> dict[str, float]:
    """Every term of the objective for ``masks`` [P, H, W] of ``pairs`` (P in total), with
    L_match's foreground term floored as the run's ``similarity_floor`` says."""
    images = torch.stack([pair.image for pair in pairs])
    classes = torch.tensor([pair.class_index for pair in pairs])
    soft = masks.unsqueeze(1)
    foreground = clip.encode_images(soft * images)
    background = clip.encode_images((1 - soft) * images)
    u_f = label_features[classes]
    match = match_loss(foreground, background, u_f, lambda_b, similarity_floor)
    area = area_loss(masks)
    truth = torch.tensor(np.stack([pair.object_mask for pair in pairs]), dtype=torch.float32)
    row = {
        "s_f": clamped_similarity(foreground, u_f).mean().item(),
        "s_b": clamped_similarity(background, u_f).mean().item(),
        "match_fg": match.parts["match_fg"].item(),
        "match_bg": match.parts["match_bg"].item(),
        "L_match": match.total.item(),
        "+ area": (match.total + area_weight * area).item(),
        "mean area": area.item(),
        "soft IoU with GT": soft_iou(masks, truth).item(),
    }
    if background_features is not None:
        refine = refine_loss(foreground, background_features[classes])
        row["L_refine"] = refine.item()
        row["total"] = row["+ area"] + lam * row["L_refine"]
    return row


def objective_table(
    clip: FrozenClip,
    pairs: Sequence[Pair],
    label_features: Tensor,
    background_features: Tensor | None,
    generator_masks: Mapping[str, Tensor],
    lambda_b: float,
    area_weight: float,
    lam: float,
    similarity_floor: float | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """One row per mask kind: the ground-truth variants, then each generator's masks
    (``generator_masks[name]`` is [P, H, W], in the order of ``pairs``). Terms are averaged
    over batches of ``batch_size`` pairs, weighted by batch size."""
    kinds: dict[str, Tensor] = {
        name: torch.tensor(
            np.stack([variant(p.object_mask, p.context_mask) for p in pairs]), dtype=torch.float32
        )
        for name, variant in GROUND_TRUTH_VARIANTS.items()
        if all(p.context_mask is not None for p in pairs) or "context" not in name
    }
    kinds.update(generator_masks)
    rows = {}
    for name, masks in kinds.items():
        batches = [
            (len(chunk), score_masks(
                clip, chunk, masks[start : start + batch_size], label_features,
                background_features, lambda_b, area_weight, lam, similarity_floor,
            ))  # fmt: skip
            for start in range(0, len(pairs), batch_size)
            for chunk in [pairs[start : start + batch_size]]
        ]
        total = sum(n for n, _ in batches)
        rows[name] = {k: sum(n * row[k] for n, row in batches) / total for k in batches[0][1]}
    return pd.DataFrame.from_dict(rows, orient="index")


# What a class's background prompt should and should not look like, as SemPLES shows it to CLIP.
PROMPT_PROBES: dict[str, Callable[[Pair], np.ndarray]] = {
    "object alone": lambda p: p.object_mask,
    "context alone": lambda p: p.context_mask,
    "object + context": lambda p: p.object_mask | p.context_mask,
    "image minus object (stage 2's target)": lambda p: ~p.object_mask,
}
PROBE_STAGE2_TARGET = "image minus object (stage 2's target)"


def _class_means_table(
    columns: Mapping[object, np.ndarray], classes: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """Per-pair ``columns`` averaged per class, one row per class present, named."""
    table = pd.DataFrame(columns).groupby(classes).mean()
    table.index = [class_names[k] for k in table.index]
    return table


def _probe_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    pairs = [pair for pair in pairs if pair.context_mask is not None and pair.context_mask.any()]
    if not pairs:
        raise ValueError("the prompt diagnostics need pairs with a non-empty context mask")
    return pairs


def _unit_features(clip: FrozenClip, images: Tensor) -> Tensor:
    return torch.nn.functional.normalize(clip.encode_images(images).float(), dim=-1)


@torch.no_grad()
def probe_features(clip: FrozenClip, pairs: Sequence[Pair]) -> dict[str, Tensor]:
    """CLIP's unit features [N, D] of each ``PROMPT_PROBES`` view of each pair, alone on black."""
    return {name: _views(clip, pairs, probe) for name, probe in PROMPT_PROBES.items()}


def _views(
    clip: FrozenClip, pairs: Sequence[Pair], mask_of: Callable[[Pair], np.ndarray]
) -> Tensor:
    """CLIP's unit features [N, D] of each pair's image seen through ``mask_of(pair)``."""
    images = torch.stack([pair.image for pair in pairs])
    masks = torch.tensor(np.stack([mask_of(pair) for pair in pairs]), dtype=torch.float32)
    return _unit_features(clip, masks.unsqueeze(1) * images)


@torch.no_grad()
def prompt_similarities(
    clip: FrozenClip, pairs: Sequence[Pair], prompt_features: Tensor, class_names: Sequence[str]
) -> pd.DataFrame:
    """Per class, mean cosine of its prompt feature [K, D] with CLIP's features of the object,
    its context, both, and the image minus the object, each alone on black (pairs with a
    context mask only). L_refine removes the context from a mask only if the prompt is closer
    to the context than to the object (``context - object`` > 0)."""
    pairs = _probe_pairs(pairs)
    classes = torch.tensor([pair.class_index for pair in pairs])
    prompts = torch.nn.functional.normalize(prompt_features.float(), dim=-1)[classes]
    columns = {
        name: (features * prompts).sum(dim=-1).numpy()
        for name, features in probe_features(clip, pairs).items()
    }
    table = _class_means_table(columns, classes.numpy(), class_names)
    table["context - object"] = table["context alone"] - table["object alone"]
    return table


@torch.no_grad()
def stage2_target_charges(
    clip: FrozenClip, pairs: Sequence[Pair], class_features: Tensor, class_names: Sequence[str]
) -> pd.DataFrame:
    """What the best prompt stage 2 can learn would make L_refine do, per class.

    Stage 2 fits a class's prompt to CLIP's view of the image minus the object and pushes it
    from the class text; the best fit is the mean of those views (``target``), and with the
    class text's component removed (``target ⊥ text``) what the text term lets it keep. The
    ``charge`` columns are the mean of sim(object + context) - sim(object alone) against each:
    L_refine pushes the foreground away from the prompt, so it takes the context off a mask only
    where the charge is positive. Negative charges mean no prompt stage 2 can learn removes the
    context: the world (what the image minus the object shows) is to blame, not the optimiser."""
    pairs = _probe_pairs(pairs)
    classes = np.array([pair.class_index for pair in pairs])
    views = probe_features(clip, pairs)
    texts = torch.nn.functional.normalize(class_features.float(), dim=-1)
    rows = {}
    for k in np.unique(classes):
        chosen = torch.from_numpy(classes == k)
        target = torch.nn.functional.normalize(views[PROBE_STAGE2_TARGET][chosen].mean(0), dim=0)
        text = texts[k]
        orthogonal = torch.nn.functional.normalize(target - (target @ text) * text, dim=0)
        charge = views["object + context"][chosen] - views["object alone"][chosen]
        rows[class_names[k]] = {
            "pairs": int(chosen.sum()),
            "target · class text": float(target @ text),
            "charge (target)": float((charge @ target).mean()),
            "charge (target ⊥ text)": float((charge @ orthogonal).mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


@torch.no_grad()
def stage2_view_by_object_count(
    clip: FrozenClip, pairs: Sequence[Pair], context_texts: Tensor, class_names: Sequence[str]
) -> pd.DataFrame:
    """Mean cosine of CLIP's view of the image minus the object (stage 2's target) with the
    class's context text [K, D], per scene object count (rows) and class (columns): whether
    stage 2 fits a prompt to the context or to the scene's other objects."""
    pairs = _probe_pairs(pairs)
    views = probe_features(clip, pairs)[PROBE_STAGE2_TARGET]
    classes = [pair.class_index for pair in pairs]
    texts = torch.nn.functional.normalize(context_texts.float(), dim=-1)[classes]
    table = pd.DataFrame({
        "objects": [pair.scene_objects for pair in pairs],
        "class": [class_names[k] for k in classes],
        "cosine": (views * texts).sum(dim=-1).numpy(),
    })  # fmt: skip
    return table.pivot_table(index="objects", columns="class", values="cosine", aggfunc="mean")


GROWTH_RADII = (0, 1, 2, 3, 4, 6, 8, 12)


def _object_through(variant: MaskVariant) -> Callable[[Pair], np.ndarray]:
    """The mask ``variant`` makes of a pair's object (and context), as :func:`_views` takes it."""
    return lambda pair: variant(pair.object_mask, pair.context_mask)


@torch.no_grad()
def similarity_by_growth(
    clip: FrozenClip,
    pairs: Sequence[Pair],
    label_features: Tensor,
    class_names: Sequence[str],
    radii: Sequence[int] = GROWTH_RADII,
) -> pd.DataFrame:
    """Mean cosine with the class text [K, D] of CLIP's view of the object grown by r px into its
    surroundings (the mask dilated by r, on black), per class (rows) and r (columns).

    A stage's masks shrink from a context onto the object along this curve: where it dips below
    both its ends, L_match's foreground term climbs before it descends, and a map that starts on
    the context stays there."""
    classes = [pair.class_index for pair in pairs]
    texts = torch.nn.functional.normalize(label_features.float(), dim=-1)[classes]
    columns = {
        r: (_views(clip, pairs, _object_through(dilated(r))) * texts).sum(-1).numpy() for r in radii
    }
    return _class_means_table(columns, np.array(classes), class_names)


@torch.no_grad()
def ring_similarities(
    clip: FrozenClip,
    pairs: Sequence[Pair],
    texts: Mapping[str, Tensor],
    class_names: Sequence[str],
    width: int = 3,
) -> pd.DataFrame:
    """Per class, the mean cosine of CLIP's view of the ``width`` px ring around the object alone
    (the dilated mask minus the object, on black) with each text [D]: what the surroundings a
    mask takes on as it grows from the object look like to CLIP."""
    grown = dilated(width)
    views = _views(clip, pairs, lambda pair: grown(pair.object_mask, None) - pair.object_mask)
    classes = np.array([pair.class_index for pair in pairs])
    columns = {
        name: (views @ torch.nn.functional.normalize(text.float(), dim=-1)).numpy()
        for name, text in texts.items()
    }
    return _class_means_table(columns, classes, class_names)


def _check_one_mask_per_pair(pairs: Sequence[Pair], masks: Tensor) -> None:
    if len(pairs) != len(masks):
        raise ValueError(f"{len(masks)} masks for {len(pairs)} pairs")


def mask_mass_by_region(
    pairs: Sequence[Pair], masks: Tensor, class_names: Sequence[str]
) -> pd.DataFrame:
    """Per class, the share of each soft mask's mass [P, H, W] on its object, on the object's
    context and elsewhere, and the mask's mean (its area): where a generator looks when its
    CAMs miss the object (a mask on the context is the co-occurrence problem; a vanishing area
    an emptied class). A pair without a context mask has no context pixels."""
    _check_one_mask_per_pair(pairs, masks)
    rows = []
    for pair, mask in zip(pairs, masks.float(), strict=True):
        total = float(mask.sum()) + 1e-6
        context = pair.context_mask
        if context is None:
            context = np.zeros_like(pair.object_mask)
        on_object, on_context = (
            float(mask[torch.from_numpy(region)].sum()) / total
            for region in (pair.object_mask, context)
        )
        rows.append({
            "class": class_names[pair.class_index], "object": on_object,
            "context": on_context, "elsewhere": 1.0 - on_object - on_context,
            "area": float(mask.mean()),
        })  # fmt: skip
    return pd.DataFrame(rows).groupby("class", sort=False).mean()


def _regions(pair: Pair) -> dict[str, np.ndarray]:
    context = pair.context_mask
    if context is None:
        context = np.zeros_like(pair.object_mask)
    context = context & ~pair.object_mask
    return {"object": pair.object_mask, "context": context,
            "elsewhere": ~(pair.object_mask | context)}  # fmt: skip


def mask_gradients_by_region(
    clip: FrozenClip,
    pairs: Sequence[Pair],
    masks: Tensor,
    label_features: Tensor,
    prompt_features: Mapping[str, Tensor],
    class_names: Sequence[str],
    similarity_floor: float | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Which way each term of the objective pushes the masks [P, H, W] of ``pairs``, per class:
    the mean gradient dL/dM of a pixel on the object, on its context and elsewhere.

    The scores of :func:`objective_table` say which *masks* a term prefers; these say where
    descent from the masks a generator actually gives goes next. Units: the area term's push,
    which is 1 on every pixel (a term's gradient times the pixel count, per pair), so the
    columns add as the loss's weights say (``match_bg`` times lambda_b, ``refine`` times lam,
    area times its weight). Positive: the term lowers the mask there. Terms: ``match_fg``,
    ``match_bg``, and ``refine: <name>`` against each ``prompt_features[name]`` [K, D]
    (hand-written texts, learned prompts, a fitted target). A pair without a context mask has
    no context pixels (NaN context column where a class has none)."""
    _check_one_mask_per_pair(pairs, masks)
    rows = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = torch.stack([pair.image for pair in chunk])
        classes = torch.tensor([pair.class_index for pair in chunk])
        leaf = masks[start : start + batch_size].detach().float().requires_grad_(True)
        soft = leaf.unsqueeze(1)
        foreground = clip.encode_images(soft * images)
        background = clip.encode_images((1 - soft) * images)
        match = match_loss(
            foreground, background, label_features[classes], 1.0, similarity_floor
        )
        terms = dict(match.parts)
        for name, features in prompt_features.items():
            terms[f"refine: {name}"] = refine_loss(foreground, features[classes])
        scale = len(chunk) * leaf[0].numel()  # per-pair mean losses -> per-pixel area units
        for term, loss in terms.items():
            (gradient,) = torch.autograd.grad(loss, leaf, retain_graph=True)
            gradient = (gradient * scale).numpy()
            for pair, pixels in zip(chunk, gradient, strict=True):
                rows.append({"class": class_names[pair.class_index], "term": term, **{
                    region: float(pixels[where].mean()) if where.any() else np.nan
                    for region, where in _regions(pair).items()
                }})  # fmt: skip
    table = pd.DataFrame(rows).groupby(["class", "term"], sort=False).mean()
    rank = {name: position for position, name in enumerate(class_names)}
    return table.iloc[np.argsort([rank[name] for name, _ in table.index], kind="stable")]


def _images_and_masks(pairs: Sequence[Pair], masks: Tensor) -> tuple[Tensor, Tensor]:
    """The pairs' images [P, 3, H, W] and their masks [P, 1, H, W] as float."""
    _check_one_mask_per_pair(pairs, masks)
    return torch.stack([pair.image for pair in pairs]), masks.float().unsqueeze(1)


def _class_means(views: Tensor, classes: Tensor, num_classes: int) -> Tensor:
    """Per class, the unit mean of its rows of ``views`` [P, D]; zero for a class without."""
    means = torch.zeros(num_classes, views.shape[-1])
    for k in classes.unique():
        means[k] = torch.nn.functional.normalize(views[classes == k].mean(0), dim=0)
    return means


@torch.no_grad()
def stage2_fitted_targets(
    clip: FrozenClip, pairs: Sequence[Pair], masks: Tensor, num_classes: int
) -> Tensor:
    """Per class, the unit mean of CLIP's unit features of (1 - M) X over its pairs: what stage
    2's image term fits the class's prompt to when M are the stage-1 generator's masks [P, H,
    W] (the best prompt it could learn, before the text term). Zero for a class without pairs."""
    images, soft = _images_and_masks(pairs, masks)
    classes = torch.tensor([pair.class_index for pair in pairs])
    return _class_means(_unit_features(clip, (1 - soft) * images), classes, num_classes)


@torch.no_grad()
def prompt_fit(
    clip: FrozenClip,
    pairs: Sequence[Pair],
    masks: Tensor,
    prompt_features: Tensor,
    class_names: Sequence[str],
) -> pd.DataFrame:
    """How well stage 2 fitted each class's prompt [K, D] to its target at the stage-1 masks
    [P, H, W]: mean cosine with each pair's (1 - M) X view and with their mean
    (:func:`stage2_fitted_targets`), against the cosine with the masked foreground M X that
    L_refine will push from it. A prompt as close to the foreground as to its target cannot
    tell stage 3 what to take off a mask. ``targets <= 1e-4``: the share of the pairs whose
    cosine with the prompt is at or below the paper's clamp, which gives them no gradient."""
    images, soft = _images_and_masks(pairs, masks)
    classes = torch.tensor([pair.class_index for pair in pairs])
    prompts = torch.nn.functional.normalize(prompt_features.float(), dim=-1)
    background = _unit_features(clip, (1 - soft) * images)
    targets = _class_means(background, classes, len(prompt_features))
    with_targets = (background * prompts[classes]).sum(-1)
    table = pd.DataFrame({
        "with each target": with_targets.numpy(),
        "with the mean target": (prompts * targets).sum(-1).numpy()[classes],
        "with the masked foreground": (
            _unit_features(clip, soft * images) * prompts[classes]
        ).sum(-1).numpy(),
        "targets <= 1e-4": (with_targets <= 1e-4).float().numpy(),
    }).groupby(classes.numpy()).mean()  # fmt: skip
    table.index = [class_names[k] for k in table.index]
    return table
