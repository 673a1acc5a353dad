"""The steps of the ``pseudo_labels`` job from its parameter section, Kedro-free.

Each pipeline node of ``pseudo_labels`` is one of these functions. Each turns the section it
gets from Kedro into the typed config once (``parameters.parse_section``, the schema that
validated it before the run) and hands typed objects to the library, which never sees the
dictionary: it decides what the run makes of each step -- skipped (real CLIP weights, an
ablation without a stage, a refine mode without IRNet) or run, on which images and device --
and calls :mod:`semples.clip.toy`, :mod:`semples.training.stages`, :mod:`semples.cams`,
:mod:`semples.refine.jobs` and :mod:`semples.evaluation`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from semples import cams, evaluation, viz
from semples.clip.toy import pretrain_toy_clip
from semples.data.toy_world import ToyWorldConfig
from semples.parameters import PseudoLabels, parse_section
from semples.refine import jobs
from semples.training import stages

logger = logging.getLogger(__name__)

Params = Mapping[str, Any]


def _typed(params: Params) -> PseudoLabels:
    return parse_section("pseudo_labels", params)
_SUMMARY_EXCLUDED = ("epoch", "lr", "note")


def toy_clip(
    caption_index: pd.DataFrame, world: Params, params: Params
) -> tuple[dict, pd.DataFrame, dict[str, Any]]:
    """The toy CLIP pretrained on the captioned set, its history and zero-shot report; nothing
    (and a note saying why) when the run configures real CLIP weights."""
    run = _typed(params)
    if not stages.uses_toy_clip(run.clip):
        reason = f"real CLIP weights configured ({run.clip.name})"
        logger.info("Toy CLIP pretraining skipped: %s", reason)
        return {}, pd.DataFrame({"note": [reason]}), {"skipped": True, "reason": reason}
    state, history, report = pretrain_toy_clip(
        caption_index, ToyWorldConfig(**world), run.toy_clip.pretraining,
        run.toy_clip.zero_shot_images, run.train.checkpoint_dir, run.train.processes,
    )  # fmt: skip
    logger.info("Toy CLIP zero-shot on held-out scenes: %s", report)
    return state, history, report


def initial_generator(
    image_index: pd.DataFrame, classes: dict, params: Params
) -> tuple[dict, pd.DataFrame]:
    """S's initial weights (the CAM classifier) and the history of training them. Checks first
    that stage 2's images hold every class, so a bad ``prompt_images`` fails before training."""
    run = _typed(params)
    if 2 not in stages.skipped_stages(run):
        stages.stage_images(image_index, run, 2, classes["class_names"])
    return stages.initial_generator_state(run, image_index, len(classes["class_names"]))


def _trained(
    stage: int,
    image_index: pd.DataFrame,
    classes: dict,
    clip_weights: dict,
    run: PseudoLabels,
    inputs: Callable[[], dict[str, Any]],
) -> tuple[dict | None, pd.DataFrame]:
    """A stage's trained state and history; None and a note when the run skips the stage
    (``inputs``, the stage's starting states, are only made for a stage that runs)."""
    skipped = stages.skipped_stages(run)
    if stage in skipped:
        return None, stages.skipped_history(stage, skipped[stage])
    return stages.run_stage_launched(
        stages.StageInputs(
            stage=stage, run=run, image_index=image_index, class_names=classes["class_names"],
            clip_state=clip_weights, checkpoint_dir=run.train.checkpoint_dir, **inputs(),
        )
    )


def stage1(
    image_index: pd.DataFrame, classes: dict, clip_weights: dict, initial: dict, params: Params
) -> tuple[dict, pd.DataFrame]:
    """Stage 1's generator (with the initial one, which stage 3 may restart from)."""
    state, history = _trained(
        1, image_index, classes, clip_weights, _typed(params),
        lambda: {"generator_state": initial},
    )  # fmt: skip
    generator = initial if state is None else state["generator"]
    return {"generator": generator, "initial_generator": initial}, history


def stage2(
    image_index: pd.DataFrame, classes: dict, clip_weights: dict, stage1: dict, params: Params
) -> tuple[dict, pd.DataFrame]:
    """The learned background prompts (nothing when the run does not learn them)."""
    state, history = _trained(
        2, image_index, classes, clip_weights, _typed(params),
        lambda: {"generator_state": stage1["generator"]},
    )  # fmt: skip
    return ({} if state is None else state["prompts"]), history


def stage3(
    image_index: pd.DataFrame,
    classes: dict,
    clip_weights: dict,
    stage1: dict,
    prompts: dict,
    params: Params,
) -> tuple[dict, pd.DataFrame]:
    """Stage 3's generator (stage 1's when the run has no stage 3)."""
    run = _typed(params)
    state, history = _trained(
        3, image_index, classes, clip_weights, run,
        lambda: {
            "generator_state": stages.stage3_initial_state(stage1, run.train.stage3_init),
            "prompts_state": prompts,
            "background_texts": stages.background_texts(run, classes["class_names"]),
        },
    )  # fmt: skip
    return {"generator": (stage1 if state is None else state)["generator"]}, history


def training_summary(
    history1: pd.DataFrame, history2: pd.DataFrame, history3: pd.DataFrame
) -> tuple[pd.DataFrame, Figure]:
    """The three stages' histories as one table, and the figure of their loss terms."""
    history = pd.concat([history1, history2, history3], ignore_index=True)
    losses = history.drop(columns=[c for c in _SUMMARY_EXCLUDED if c in history.columns])
    return history, viz.loss_history_figure(losses)


def cam_set(image_index: pd.DataFrame, classes: dict, stage3: dict, params: Params) -> dict:
    """Lazy multi-scale CAM jobs of stage 3's generator on the images of ``cams.splits``."""
    run = _typed(params)
    device = stages.resolve_device(run.device)
    generator = stages.generator_module(
        run.generator, len(classes["class_names"]), stage3["generator"]
    ).to(device)
    rows = cams.labelled_rows(image_index, run.cams.splits)
    return cams.cam_jobs(generator, rows, run.cams.scales, run.cams.flip, device)


def cam_report(
    cam_set: Mapping,
    image_index: pd.DataFrame,
    classes: dict,
    initial: dict,
    stage1: dict,
    stage3: dict,
    params: Params,
) -> tuple[dict[str, Any], Figure]:
    """The CAM report: the final CAMs and the initial, stage-1 and stage-3 generators."""
    states = {"initial": initial, "stage1": stage1["generator"], "stage3": stage3["generator"]}
    return evaluation.cam_report(cam_set, image_index, classes, states, _typed(params))


def ir_labels(cam_set: Mapping, image_index: pd.DataFrame, params: Params) -> dict:
    """IRN's confident-region labels of the CAMs (none when the refine mode has no IRN)."""
    run = _typed(params)
    settings = run.pseudo_masks
    if not settings.refine.startswith("irn"):
        return {}
    rows = cams.labelled_rows(image_index, run.cams.splits)
    return jobs.ir_label_jobs(
        cam_set, rows, settings.ir_labels.model_dump(), settings.crf.model_dump()
    )


def irnet(ir_label_set: Mapping, image_index: pd.DataFrame, params: Params):
    """IRNet trained on the IR labels, and its history (nothing when the mode has no IRN)."""
    run = _typed(params)
    mode = run.pseudo_masks.refine
    if not mode.startswith("irn"):
        reason = f"refine mode {mode!r} does not use IRNet"
        logger.info("IRNet training skipped: %s", reason)
        return {}, pd.DataFrame({"note": [reason]})
    rows = cams.labelled_rows(image_index, run.cams.splits)
    device = stages.resolve_device(run.device)
    return jobs.fit_irnet(ir_label_set, rows, run.pseudo_masks.irnet, run.train, run.seed, device)


def pseudo_masks(cam_set: Mapping, image_index: pd.DataFrame, irnet: dict, params: Params) -> dict:
    """Lazy pseudo-mask jobs of the configured refine mode on the images of ``cams.splits``."""
    run = _typed(params)
    settings = run.pseudo_masks
    device = stages.resolve_device(run.device)
    model = jobs.trained_irnet(settings.irnet, irnet, device) if irnet else None
    rows = cams.labelled_rows(image_index, run.cams.splits)
    options = settings.model_dump(include={"cam_threshold", "walk", "crf"})
    return jobs.pseudo_mask_jobs(cam_set, rows, settings.refine, options, model, device)


def pseudo_mask_report(
    mask_set: Mapping,
    cam_set: Mapping,
    ir_label_set: Mapping,
    irnet: dict,
    image_index: pd.DataFrame,
    classes: dict,
    params: Params,
) -> dict[str, Any]:
    """The pseudo-mask report (:func:`semples.evaluation.pseudo_mask_report`)."""
    return evaluation.pseudo_mask_report(
        mask_set, cam_set, ir_label_set, irnet, image_index, classes, _typed(params)
    )
