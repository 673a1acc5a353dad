"""The three SemPLES stages as separate runs of one loop, from plain parameters.

Each stage takes and returns plain state (dicts of tensors) so that Kedro saves every stage's
result as its own versioned checkpoint, and so that a stage can run in several processes
(:mod:`semples.training.distributed`) and hand rank 0's result back.

Reference-code facts kept here: stage 2 starts from the stage-1 generator; stage 3 restarts S
from the *same initial weights as stage 1* (``stage3_init: stage1_initial``), not from stage 1's
result (``stage1_final`` switches to that).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from semples.checkpoints import scratch_checkpoint
from semples.clip import TOY_CLIP
from semples.clip.model import FrozenClip, class_text_features, load_clip
from semples.clip.prompts import PromptLearner
from semples.data.images import Augmentation, LabelledImages
from semples.models import build_mask_generator
from semples.training import distributed
from semples.training.cam_classifier import train_cam_classifier
from semples.training.config import StageConfig, stage_config, with_budget
from semples.training.loop import StageModels, train_stage

if TYPE_CHECKING:
    from semples.parameters import Clip, Generator, PseudoLabels

logger = logging.getLogger(__name__)

STAGE3_INITS = ("stage1_initial", "stage1_final")


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def uses_toy_clip(clip: Clip) -> bool:
    """The toy CLIP is pretrained by the pipeline unless real weights are configured."""
    return clip.name == TOY_CLIP and not clip.weights and not clip.pretrained


def frozen_clip(
    clip: Clip, toy_state: Mapping[str, torch.Tensor], device: torch.device
) -> FrozenClip:
    """The frozen CLIP of the run: real weights (tag or file) when configured, else the toy
    CLIP the pipeline pretrained."""
    if uses_toy_clip(clip):
        if not toy_state:
            raise ValueError("the toy CLIP has no pretrained weights: run its pretraining node")
        model = load_clip(TOY_CLIP, state_dict=toy_state, precision=clip.precision)
    else:
        model = load_clip(
            clip.name, pretrained=clip.pretrained, weights=clip.weights, precision=clip.precision
        )
    return model.to(device)


def generator_module(
    settings: Generator, num_classes: int, state: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """The configured generator (``arch``, ``options``), with ``state`` when given, else its
    initial weights (random, or the configured ``weights`` file)."""
    generator = build_mask_generator(
        settings.arch,
        num_classes,
        weights=None if state is not None else settings.weights,
        **settings.options,
    )
    if state is not None:
        generator.load_state_dict(state)
    return generator


def initial_generator_state(
    run: PseudoLabels, image_index: pd.DataFrame, num_classes: int
) -> tuple[dict, pd.DataFrame]:
    """S's initial weights and the history of making them.

    A seeded random init or the configured weights file, then, when ``generator.cam_pretraining``
    is set, trained as a CAM classifier on the image-level labels of the training splits (the
    prior a trained CAM network gives the paper's generator), in ``train.processes`` DDP
    processes when that is above 1, resumable from its epoch checkpoint in
    ``train.checkpoint_dir``. Without it the history is empty.
    """
    inputs = (run, image_index, num_classes)
    return distributed.launched(_initial_generator, inputs, run.train.processes)


def _initial_generator(
    inputs: tuple[PseudoLabels, pd.DataFrame, int], progress: bool
) -> tuple[dict, pd.DataFrame]:
    run, image_index, num_classes = inputs
    torch.manual_seed(run.seed)
    generator = generator_module(run.generator, num_classes)
    settings = run.generator.cam_pretraining
    history = pd.DataFrame(columns=["epoch", "step", "lr", "bce"])
    if settings:
        config = with_budget(settings, run.seed, run.train.max_steps)
        dataset = training_dataset(image_index, run)
        checkpoint = scratch_checkpoint(
            run.train.checkpoint_dir, "cam_classifier",
            config=asdict(config), images=dataset.ids, generator=run.generator.model_dump(),
            augmentation=run.train.augmentation.model_dump(), classes=num_classes,
        )  # fmt: skip
        device = distributed.process_device(resolve_device(run.device))
        history = train_cam_classifier(generator, dataset, config, device, progress, checkpoint)
    return {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}, history


@dataclass
class StageInputs:
    """Everything one stage needs, as plain data (picklable for worker processes)."""

    stage: int
    run: PseudoLabels
    image_index: pd.DataFrame
    class_names: list[str]
    clip_state: dict
    generator_state: dict
    prompts_state: dict | None = None
    background_texts: list[str] | None = None
    checkpoint_dir: str | None = None


def stage_config_of(stage: int, run: PseudoLabels) -> StageConfig:
    """A stage's config from the run's ``train`` settings (``train.max_steps`` caps all)."""
    train = run.train
    overrides = getattr(train, f"stage{stage}").model_dump(exclude_none=True)
    if train.max_steps is not None:
        overrides["max_steps"] = train.max_steps
    common = train.common.model_dump(exclude_none=True)
    return stage_config(
        stage, {**common, "seed": run.seed, "loss_ablation": train.loss_ablation}, overrides
    )


def stage3_initial_state(stage1: Mapping[str, dict], init: str) -> dict:
    """Stage 3 restarts S from stage 1's initial weights (reference code) or its result."""
    if init not in STAGE3_INITS:
        raise ValueError(f"stage3_init must be one of {STAGE3_INITS}, got {init!r}")
    return stage1["initial_generator" if init == "stage1_initial" else "generator"]


def training_dataset(image_index: pd.DataFrame, run: PseudoLabels) -> LabelledImages:
    """The training splits with the configured augmentation."""
    augmentation = run.train.augmentation
    return LabelledImages(
        image_index,
        run.train.splits,
        Augmentation(
            resize_long=tuple(augmentation.resize_long) if augmentation.resize_long else None,
            hflip=augmentation.hflip,
            crop_size=augmentation.crop_size,
        ),
        seed=run.seed,
    )


def stage_images(
    image_index: pd.DataFrame, run: PseudoLabels, stage: int, class_names: Sequence[str]
) -> pd.DataFrame:
    """The image index a stage trains on. Stage 2 under ``train.prompt_images: single_class``
    keeps only the images labelled with one class, so each background prompt learns from
    backgrounds that show no other class (README, "The clamp starved stage 2, and the collages
    misled it"). Raises, naming them, when that leaves a class without a training image."""
    if stage != 2 or run.train.prompt_images == "all":
        return image_index
    single = image_index[[sum(labels) == 1 for labels in image_index["labels"]]]
    training = single[single["split"].isin(run.train.splits)]
    counts = np.zeros(len(class_names)) if training.empty else np.stack(training["labels"]).sum(0)
    missing = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if missing:
        raise ValueError(
            f"train.prompt_images: single_class leaves stage 2 no image labelled with only "
            f"{missing} in splits {run.train.splits}; use prompt_images: all"
        )
    return single


def _models(inputs: StageInputs, device: torch.device) -> StageModels:
    run = inputs.run
    clip = frozen_clip(run.clip, inputs.clip_state, device)
    generator = generator_module(run.generator, len(inputs.class_names), inputs.generator_state)
    prompts = PromptLearner(
        clip,
        len(inputs.class_names),
        length=run.prompts.length,
        prefix=run.prompts.prefix,
        generator=torch.Generator().manual_seed(run.seed),
    )
    if inputs.prompts_state:
        prompts.load_state_dict(inputs.prompts_state)
    label_features = class_text_features(clip, inputs.class_names, run.text_template)
    background = None
    if inputs.background_texts is not None:
        background = clip.encode_texts(inputs.background_texts)
    elif inputs.stage == 3:
        with torch.no_grad():
            background = prompts()
    return StageModels(clip, generator.to(device), prompts.to(device), label_features, background)


def run_stage(inputs: StageInputs, progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """Train one stage in this process (or as one rank of a distributed run).

    Returns ``{"generator": ..., "prompts": ...}`` state dicts after training, and the loss
    history. The engine removes the epoch checkpoint once the stage has finished.
    """
    run = inputs.run
    device = distributed.process_device(resolve_device(run.device))
    config = stage_config_of(inputs.stage, run)
    rows = stage_images(inputs.image_index, run, inputs.stage, inputs.class_names)
    dataset = training_dataset(rows, run)
    models = _models(inputs, device)
    checkpoint = scratch_checkpoint(
        inputs.checkpoint_dir, f"stage{inputs.stage}", config=asdict(config), images=dataset.ids,
        clip=run.clip.model_dump(), generator=run.generator.model_dump(),
        prompts=run.prompts.model_dump(), background_texts=inputs.background_texts,
    )  # fmt: skip
    history = train_stage(config, models, dataset, checkpoint, progress=progress)
    state = {
        "generator": {k: v.cpu() for k, v in models.generator.state_dict().items()},
        "prompts": {k: v.cpu() for k, v in models.prompts.state_dict().items()},
    }
    return state, history


def run_stage_launched(inputs: StageInputs) -> tuple[dict, pd.DataFrame]:
    """Run a stage in ``train.processes`` processes (DDP) when asked, else in this one."""
    return distributed.launched(run_stage, inputs, inputs.run.train.processes)


def skipped_history(stage: int, reason: str) -> pd.DataFrame:
    logger.info("Stage %d skipped: %s", stage, reason)
    return pd.DataFrame({"stage": [stage], "epoch": [None], "step": [0], "note": [reason]})


def background_texts(run: PseudoLabels, class_names: Sequence[str]) -> list[str] | None:
    """Hand-written background texts for the CLIMS-style control, in class order; None when
    the run uses learned prompts."""
    if run.background_prompts == "learned":
        return None
    texts = run.handwritten_prompts
    missing = [name for name in class_names if name not in texts]
    if missing:
        raise ValueError(f"handwritten_prompts has no text for classes {missing}")
    return [texts[name] for name in class_names]


CAM_CLASSIFIER_ONLY = "none"


def skipped_stages(run: PseudoLabels) -> dict[int, str]:
    """The SemPLES stages this run skips, with the reason, so training and evaluation agree.

    ``train.loss_ablation: none`` skips all three (the CAM classifier alone: the ablation's
    baseline); it is answered here, before :func:`stage_config_of`, which knows only the
    paper's rows. Otherwise stage 2 is skipped when prompts are not learned and stage 3 when it
    has no L_refine (``match_only``); a skipped stage passes its input on unchanged.
    """
    if run.train.loss_ablation == CAM_CLASSIFIER_ONLY:
        reason = "loss_ablation none: the CAM classifier alone"
        return {1: reason, 2: reason, 3: reason}
    skipped = {}
    if run.background_prompts != "learned" or not stage_config_of(2, run).learn_prompts:
        skipped[2] = "background prompts are not learned in this run"
    if not stage_config_of(3, run).refine:
        skipped[3] = "no L_refine (match_only)"
    return skipped
