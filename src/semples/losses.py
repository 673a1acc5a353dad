"""The SemPLES losses: Eq. (1)-(3) of the paper and the mask-area regulariser, nothing else.

Every loss takes CLIP features with one row per positive (image, class) pair -- v: image
features of masked images, u: text features -- and averages over the pairs. ``sim`` is the
cosine similarity clamped to [1e-4, 0.9999] (the paper follows CLIMS: non-positive scores become
a small positive number), so that both -log(sim) and -log(1 - sim) stay finite.

The clamp passes no gradient to a pair whose cosine is non-positive. Real CLIP's image-text
cosines are positive in practice (about 0.1-0.35), so it seldom bites there; a CLIP whose
cosines go negative (the toy CLIP's do) loses the gradient of exactly the pairs an attracting
term fits worst. The attracting
terms (-log sim of L_match's foreground and L_prompt's image term) therefore take an optional
``similarity_floor``: below it, -log sim continues along its tangent line, so such a pair still
pulls with a bounded slope (1 / floor). Above the floor the terms are the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

TEXT_TERM_FORMS = ("paper", "reference")
_HIGH = 0.9999  # the clamp's upper end (CLIMS, the paper)


@dataclass(frozen=True)
class LossTerms:
    """A weighted total to optimise and its unweighted named parts, so a loop can log each."""

    total: Tensor
    parts: dict[str, Tensor]


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity ``[P]`` of two ``[P, D]`` feature tensors of equal shape."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"expected two [P, D] feature tensors of equal shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    if a.shape[0] == 0:
        raise ValueError("no (image, class) pairs: a mean over zero pairs is undefined")
    return F.cosine_similarity(a, b, dim=-1)


def clamped_similarity(a: Tensor, b: Tensor, low: float = 1e-4, high: float = _HIGH) -> Tensor:
    """Row-wise cosine similarity ``[P]`` of ``a`` and ``b`` ``[P, D]``, clamped to [low, high].

    As in the reference code, torch.clamp passes no gradient outside [low, high]: a pair whose
    cosine is non-positive (or above ``high``) does not move the features through this term.
    A zero vector gets cosine 0 (``F.cosine_similarity`` divides by max(norm, 1e-8)), hence
    ``low`` and a zero gradient: finite, never NaN.
    """
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"need 0 < low < high < 1, got low={low}, high={high}")
    return _cosine(a, b).clamp(low, high)


def check_similarity_floor(floor: float | None) -> None:
    """Raise ValueError unless ``floor`` is None or inside (0, the clamp's upper end)."""
    if floor is not None and not 0.0 < floor < _HIGH:
        raise ValueError(f"similarity_floor must be in (0, {_HIGH}) or null, got {floor}")


def _attract(a: Tensor, b: Tensor, floor: float | None = None) -> Tensor:
    """mean[-log sim(a, b)]: small when a and b point the same way. With ``floor``, a pair whose
    cosine is below it scores -log(floor) - (cosine - floor) / floor, the tangent at the floor."""
    if floor is None:
        return -torch.log(clamped_similarity(a, b)).mean()
    check_similarity_floor(floor)
    cosine = _cosine(a, b)
    tangent = -math.log(floor) - (cosine - floor) / floor
    return torch.where(cosine >= floor, -torch.log(cosine.clamp(floor, _HIGH)), tangent).mean()


def _repel(a: Tensor, b: Tensor) -> Tensor:
    """mean[-log(1 - sim(a, b))]: small when a and b are unrelated or opposed."""
    return -torch.log1p(-clamped_similarity(a, b)).mean()


def _check_weight(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def match_loss(
    v_f: Tensor, v_b: Tensor, u_f: Tensor, lambda_b: float, similarity_floor: float | None = None
) -> LossTerms:
    """Eq. (1), segment-label matching: the masked foreground should match its class text,
    the background should not. Parts: ``match_fg``, ``match_bg`` (before ``lambda_b``).
    ``similarity_floor``: see the module docstring (None: the paper's clamp)."""
    _check_weight("lambda_b", lambda_b)
    parts = {"match_fg": _attract(v_f, u_f, similarity_floor), "match_bg": _repel(v_b, u_f)}
    return LossTerms(total=parts["match_fg"] + lambda_b * parts["match_bg"], parts=parts)


def prompt_loss(
    u_b: Tensor,
    v_b: Tensor,
    u_f: Tensor,
    lambda_t: float,
    text_term: str = "paper",
    image_term: bool = True,
    use_text_term: bool = True,
    similarity_floor: float | None = None,
) -> LossTerms:
    """Eq. (2), contrastive prompt learning: the learned prompt feature u_b should match the
    background image and not the class text.

    ``prompt_image`` = mean[-log sim(u_b, v_b)]. ``prompt_text`` is the paper's
    mean[-log(1 - sim(u_b, u_f))] (``text_term="paper"``) or the public reference code's
    mean[+log sim(u_b, u_f)] (``"reference"``; negative-valued, it pushes the similarity down
    towards the clamp's lower end). Total = image + lambda_t * text. ``image_term`` /
    ``use_text_term`` switch a term off for the paper's Table 5 ablation; only enabled terms
    appear in ``parts``. ``similarity_floor`` applies to the image term (module docstring).
    """
    if text_term not in TEXT_TERM_FORMS:
        raise ValueError(f"unknown text_term {text_term!r}; choose one of {list(TEXT_TERM_FORMS)}")
    if not (image_term or use_text_term):
        raise ValueError("prompt_loss needs at least one of image_term / use_text_term")
    _check_weight("lambda_t", lambda_t)
    parts: dict[str, Tensor] = {}
    total = u_b.new_zeros(())
    if image_term:
        parts["prompt_image"] = _attract(u_b, v_b, similarity_floor)
        total = total + parts["prompt_image"]
    if use_text_term:
        if text_term == "paper":
            parts["prompt_text"] = _repel(u_b, u_f)
        else:
            parts["prompt_text"] = -_attract(u_b, u_f)
        total = total + lambda_t * parts["prompt_text"]
    return LossTerms(total=total, parts=parts)


def refine_loss(v_f: Tensor, u_b: Tensor) -> Tensor:
    """Eq. (3)'s L_refine = mean[-log(1 - sim(v_f, u_b))]: the masked foreground should not
    look like the class's learned background prompt."""
    return _repel(v_f, u_b)


def area_loss(masks: Tensor) -> Tensor:
    """Mean mask value over ``[P, H, W]`` masks: the CLIMS-style area regulariser, which keeps
    masks from spreading over background (METHOD.md; weight 0 reproduces the paper's Eqs.)."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks [P, H, W], got {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        raise ValueError("no masks: a mean over zero pairs is undefined")
    return masks.mean()
