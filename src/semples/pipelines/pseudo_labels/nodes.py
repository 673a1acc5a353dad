"""pseudo_labels nodes: thin adapters over semples.clip, semples.training, semples.cams,
semples.refine and semples.evaluation."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from semples import cams, evaluation, viz
from semples.clip.toy import pretrain_toy_clip
from semples.refine import jobs
from semples.training import stages

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "lr", "note")


def pretrain_clip(
    caption_index: pd.DataFrame, world: dict[str, Any], params: dict[str, Any]
) -> tuple[dict, pd.DataFrame, dict[str, Any]]:
    if not stages.uses_toy_clip(params["clip"]):
        reason = f"real CLIP weights configured ({params['clip']['name']})"
        logger.info("Toy CLIP pretraining skipped: %s", reason)
        return {}, pd.DataFrame({"note": [reason]}), {"skipped": True, "reason": reason}
    train = params["train"]
    state, history, report = pretrain_toy_clip(
        caption_index, world, params["toy_clip"], train["checkpoint_dir"], train["processes"]
    )
    logger.info("Toy CLIP zero-shot on held-out scenes: %s", report)
    return state, history, report


def _inputs(stage: int, image_index, classes, clip_weights, params, **kwargs) -> stages.StageInputs:
    return stages.StageInputs(
        stage=stage, params=params, image_index=image_index, class_names=classes["class_names"],
        clip_state=clip_weights, checkpoint_dir=params["train"]["checkpoint_dir"], **kwargs,
    )  # fmt: skip


def initialise_generator(
    image_index: pd.DataFrame, classes: dict, params: dict[str, Any]
) -> tuple[dict, pd.DataFrame]:
    return stages.initial_generator_state(params, image_index, len(classes["class_names"]))


def train_stage1(
    image_index: pd.DataFrame,
    classes: dict,
    clip_weights: dict,
    initial: dict,
    params: dict[str, Any],
) -> tuple[dict, pd.DataFrame]:
    skipped = stages.skipped_stages(params)
    if 1 in skipped:
        history = stages.skipped_history(1, skipped[1])
        return {"generator": initial, "initial_generator": initial}, history
    inputs = _inputs(1, image_index, classes, clip_weights, params, generator_state=initial)
    state, history = stages.run_stage_launched(inputs)
    return {"generator": state["generator"], "initial_generator": initial}, history


def train_stage2(
    image_index: pd.DataFrame, classes: dict, clip_weights: dict, stage1: dict, params: dict
) -> tuple[dict, pd.DataFrame]:
    skipped = stages.skipped_stages(params)
    if 2 in skipped:
        return {}, stages.skipped_history(2, skipped[2])
    inputs = _inputs(
        2, image_index, classes, clip_weights, params, generator_state=stage1["generator"]
    )
    state, history = stages.run_stage_launched(inputs)
    return state["prompts"], history


def train_stage3(
    image_index: pd.DataFrame,
    classes: dict,
    clip_weights: dict,
    stage1: dict,
    prompts: dict,
    params: dict[str, Any],
) -> tuple[dict, pd.DataFrame]:
    skipped = stages.skipped_stages(params)
    if 3 in skipped:
        return {"generator": stage1["generator"]}, stages.skipped_history(3, skipped[3])
    inputs = _inputs(
        3, image_index, classes, clip_weights, params,
        generator_state=stages.stage3_initial_state(stage1, params["train"]["stage3_init"]),
        prompts_state=prompts,
        background_texts=stages.background_texts(params, classes["class_names"]),
    )  # fmt: skip
    state, history = stages.run_stage_launched(inputs)
    return {"generator": state["generator"]}, history


def summarise_training(
    history1: pd.DataFrame, history2: pd.DataFrame, history3: pd.DataFrame
) -> tuple[pd.DataFrame, Figure]:
    history = pd.concat([history1, history2, history3], ignore_index=True)
    losses = history.drop(columns=[c for c in HISTORY_COLUMNS if c in history.columns])
    return history, viz.loss_history_figure(losses)


def infer_cams(
    image_index: pd.DataFrame, classes: dict, stage3: dict, params: dict[str, Any]
) -> dict:
    device = stages.resolve_device(params["device"])
    generator = stages.generator_module(
        params["generator"], len(classes["class_names"]), stage3["generator"]
    ).to(device)
    rows = cams.labelled_rows(image_index, params["cams"]["splits"])
    return cams.cam_jobs(generator, rows, params["cams"]["scales"], params["cams"]["flip"], device)


def evaluate_cams(
    cam_set,
    image_index: pd.DataFrame,
    classes: dict,
    initial: dict,
    stage1: dict,
    stage3: dict,
    params: dict[str, Any],
) -> tuple[dict[str, Any], Figure]:
    states = {"initial": initial, "stage1": stage1["generator"], "stage3": stage3["generator"]}
    return evaluation.cam_report(cam_set, image_index, classes, states, params)


def make_ir_labels(cam_set, image_index: pd.DataFrame, params: dict[str, Any]) -> dict:
    settings = params["pseudo_masks"]
    if not settings["refine"].startswith("irn"):
        return {}
    rows = cams.labelled_rows(image_index, params["cams"]["splits"])
    return jobs.ir_label_jobs(cam_set, rows, settings["ir_labels"], settings["crf"])


def train_irnet(
    ir_label_set, image_index: pd.DataFrame, params: dict[str, Any]
) -> tuple[dict, pd.DataFrame]:
    mode = params["pseudo_masks"]["refine"]
    if not mode.startswith("irn"):
        reason = f"refine mode {mode!r} does not use IRNet"
        logger.info("IRNet training skipped: %s", reason)
        return {}, pd.DataFrame({"note": [reason]})
    rows = cams.labelled_rows(image_index, params["cams"]["splits"])
    return jobs.fit_irnet(ir_label_set, rows, params, stages.resolve_device(params["device"]))


def make_pseudo_masks(
    cam_set, image_index: pd.DataFrame, irnet: dict, params: dict[str, Any]
) -> dict:
    settings = params["pseudo_masks"]
    device = stages.resolve_device(params["device"])
    model = jobs.trained_irnet(settings["irnet"], irnet, device) if irnet else None
    rows = cams.labelled_rows(image_index, params["cams"]["splits"])
    options = {key: settings[key] for key in ("cam_threshold", "walk", "crf")}
    return jobs.pseudo_mask_jobs(cam_set, rows, settings["refine"], options, model, device)
