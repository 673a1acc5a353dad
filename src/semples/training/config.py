"""Configuration of the three SemPLES stages and of the paper's loss ablation (Table 5)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from semples.losses import check_similarity_floor
from semples.models.cam_networks import MASK_ACTIVATIONS

STAGES = (1, 2, 3)
# What stages 1 and 3 train of S: every weight, or only its 1x1 classifier on a frozen trunk
# (the reference's WeakTr generator passes gradient to its head and fusion module only).
TRAINABLE_PARTS = ("all", "head")
T = TypeVar("T")


def with_budget(config: T, seed: int, max_steps: int | None) -> T:
    """A typed training config (``CamClassifierConfig``, ``IrnetConfig``) with the run's seed
    and, when set, the run's step cap (``train.max_steps``)."""
    return replace(config, seed=seed, **({"max_steps": max_steps} if max_steps else {}))


def check_budget(config: Any) -> None:
    """The checks every training config shares: ``epochs``, ``batch_size`` >= 1, ``lr`` > 0,
    ``weight_decay`` >= 0, ``max_steps`` None or >= 1; the error names the field and value."""
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not config.lr > 0:
        raise ValueError(f"lr must be > 0, got {config.lr}")
    if config.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay}")
    if config.max_steps is not None and config.max_steps < 1:
        raise ValueError(f"max_steps must be None or >= 1, got {config.max_steps}")


# Table 5 of the paper, row by row: which stages run and which terms they use.
LOSS_ABLATIONS = {
    "match_only": {"learn_prompts": False, "refine": False},
    "refine_unlearned": {"learn_prompts": False, "refine": True},
    "text_repel_only": {"prompt_image_term": False, "prompt_text_term": True},
    "image_align_only": {"prompt_image_term": True, "prompt_text_term": False},
    "all": {},
    # Not a row of the paper: stage 3 with L_refine weighted 0, i.e. stage 1's objective for
    # stage 3's epochs. The control that says what L_refine itself adds, at an equal budget.
    "no_refine": {"learn_prompts": False, "lam": 0.0},
}


@dataclass(frozen=True)
class StageConfig:
    """Hyperparameters of one stage (1: match, 2: prompts with S frozen, 3: match + refine).

    ``lr`` is the base learning rate; with ``scale_lr_with_batch`` the effective rate is
    ``lr * batch_size / 512`` as in the reference code. ``max_steps`` caps a stage (quick runs,
    tests); it is documented as the way to run a real dataset for a few steps.
    """

    stage: int
    epochs: int = 1
    batch_size: int = 16
    lr: float = 5e-4
    scale_lr_with_batch: bool = False
    weight_decay: float = 0.03
    lambda_b: float = 2.4
    lambda_t: float = 0.02
    lam: float = 0.05
    area_weight: float = 0.0
    mask_eps: float = 0.1
    mask_activation: str = "sigmoid"
    trainable: str = "all"
    text_term: str = "paper"
    similarity_floor: float | None = None
    prompt_image_term: bool = True
    prompt_text_term: bool = True
    learn_prompts: bool = True
    refine: bool = True
    max_steps: int | None = None
    seed: int = 0
    amp: bool = True
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 or null, got {self.max_steps}")
        if self.text_term not in ("paper", "reference"):
            raise ValueError(f"text_term must be 'paper' or 'reference', got {self.text_term!r}")
        check_similarity_floor(self.similarity_floor)
        if self.mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(
                f"mask_activation must be one of {MASK_ACTIVATIONS}, got {self.mask_activation!r}"
            )
        if self.trainable not in TRAINABLE_PARTS:
            raise ValueError(f"trainable must be one of {TRAINABLE_PARTS}, got {self.trainable!r}")
        if self.stage == 2 and not (self.prompt_image_term or self.prompt_text_term):
            raise ValueError("stage 2 needs at least one of prompt_image_term, prompt_text_term")

    @property
    def effective_lr(self) -> float:
        return self.lr * self.batch_size / 512 if self.scale_lr_with_batch else self.lr


def stage_config(stage: int, common: dict[str, Any], overrides: dict[str, Any]) -> StageConfig:
    """A stage's config from the shared settings, the stage's own, and the loss ablation."""
    settings = {**common, **overrides}
    ablation = settings.pop("loss_ablation", "all")
    if ablation not in LOSS_ABLATIONS:
        raise ValueError(f"loss_ablation must be one of {sorted(LOSS_ABLATIONS)}, got {ablation!r}")
    config = StageConfig(stage=stage, **settings)
    return replace(config, **LOSS_ABLATIONS[ablation])
