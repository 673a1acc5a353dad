"""pseudo_labels nodes: thin adapters over semples.clip, semples.training, semples.cams and
semples.refine."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from semples import cams, viz
from semples.clip.toy import pretrain_toy_clip
from semples.data.images import read_rgb
from semples.metrics import evaluate_label_maps
from semples.refine import irn_scores, jobs
from semples.training import stages

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "lr", "note")
# The generator weights each stage's scores in the CAM report come from.
STAGE_WEIGHTS = {
    "initial": "initial_generator_weights",
    "stage1": "stage1_checkpoint",
    "stage3": "stage3_checkpoint",
}


def pretrain_clip(
    caption_index: pd.DataFrame, world: dict[str, Any], params: dict[str, Any]
) -> tuple[dict, pd.DataFrame, dict[str, Any]]:
    if not stages.uses_toy_clip(params["clip"]):
        reason = f"real CLIP weights configured ({params['clip']['name']})"
        logger.info("Toy CLIP pretraining skipped: %s", reason)
        return {}, pd.DataFrame({"note": [reason]}), {"skipped": True, "reason": reason}
    state, history, report = pretrain_toy_clip(caption_index, world, params["toy_clip"])
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


def _evaluated(image_index: pd.DataFrame, split: str, saved, num_classes: int):
    """The rows of ``split`` that ``saved`` holds, and their ground-truth loaders."""
    rows = cams.labelled_rows(image_index, [split])
    rows = rows[rows["id"].isin(list(saved))]
    return rows, cams.gt_mask_loaders(rows, num_classes)


def _report_params(params: dict[str, Any], classes: dict) -> dict[str, Any]:
    """The key parameters plus the dataset, so that runs on different data are told apart."""
    return {
        **stages.report_params(params),
        "dataset": classes.get("dataset"),
        "dataset_params": classes.get("dataset_params"),
    }


def _leak_text(report: dict[str, Any]) -> str:
    overall = (report["context_leak"] or {}).get("overall")
    return "" if overall is None else f", context leak {overall:.4f}"


def _score_stages(
    states: dict[str, dict], rows: pd.DataFrame, gt, contexts, names: list, params: dict
) -> dict[str, dict]:
    """Each stage's generator scored in memory on the evaluation rows, logged one per line."""
    evaluation = params["evaluation"]
    device = stages.resolve_device(params["device"])

    def score(name: str, state: dict) -> dict:
        generator = stages.generator_module(params["generator"], len(names), state).to(device)
        report = cams.evaluate_generator(
            generator, rows, gt, names, evaluation["thresholds"],
            evaluation["stage_scales"], evaluation["stage_flip"], device, contexts,
        )  # fmt: skip
        return {**report, "source": STAGE_WEIGHTS[name]}

    skipped = {f"stage{n}": reason for n, reason in stages.skipped_stages(params).items()}
    reports = cams.evaluate_stages(states, skipped, score)
    for name, report in reports.items():
        logger.info(
            "CAM mIoU of %s on %s (%s, scales %s): %.4f at threshold %.2f%s%s",
            *(name, evaluation["split"], report["source"], report["scales"]),
            *(report["miou"], report["best_threshold"], _leak_text(report)),
            f" (skipped: {report['skip_reason']})" if report["skipped"] else "",
        )
    return reports


def evaluate_cams(
    cam_set,
    image_index: pd.DataFrame,
    classes: dict,
    initial: dict,
    stage1: dict,
    stage3: dict,
    params: dict[str, Any],
) -> tuple[dict[str, Any], Figure]:
    names = classes["class_names"]
    evaluation = params["evaluation"]
    split = evaluation["split"]
    rows, gt = _evaluated(image_index, split, cam_set, len(names))
    contexts = cams.context_map_loaders(rows, len(names))
    report = cams.evaluate_cams(
        {i: cam_set[i] for i in rows["id"]}, gt, names, evaluation["thresholds"], contexts
    )
    logger.info(
        "CAM mIoU on %s: %.4f at threshold %.2f (trivial map: %.4f, %d images)%s",
        *(split, report["miou"], report["best_threshold"]),
        *(report["trivial_miou"], report["num_images"], _leak_text(report)),
    )
    states = {"initial": initial, "stage1": stage1["generator"], "stage3": stage3["generator"]}
    report["stages"] = _score_stages(states, rows, gt, contexts, names, params)
    scored = {key: evaluation[key] for key in ("thresholds", "stage_scales", "stage_flip")}
    report.update(split=split, params={**_report_params(params, classes), "evaluation": scored})
    shown = rows.head(evaluation["overlay_images"])
    figure = viz.cam_overlay_figure(
        [read_rgb(p) for p in shown["image_path"]],
        [cam_set.read(i) for i in shown["id"]],
        names,
        [gt[i]() for i in shown["id"]],
    )
    return report, figure


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


def evaluate_pseudo_masks(
    mask_set,
    cam_set,
    ir_label_set,
    irnet: dict,
    image_index: pd.DataFrame,
    classes: dict,
    params: dict[str, Any],
) -> dict[str, Any]:
    settings = params["pseudo_masks"]
    names = ["background", *classes["class_names"]]
    split = params["evaluation"]["split"]
    rows, gt = _evaluated(image_index, split, mask_set, len(classes["class_names"]))
    contexts = cams.context_map_loaders(rows, len(classes["class_names"]))
    report = evaluate_label_maps({i: mask_set[i] for i in rows["id"]}, gt, names, contexts)
    thresholded = jobs.pseudo_mask_jobs(
        cam_set, rows, "none", {"cam_threshold": settings["cam_threshold"]}
    )
    report["cam_miou"] = evaluate_label_maps(thresholded, gt, names)["miou"]
    report.update(
        split=split,
        refine=settings["refine"],
        params={**_report_params(params, classes), "pseudo_masks": dict(settings)},
    )
    logger.info(
        "Pseudo-mask mIoU on %s (%s): %.4f%s; the CAMs they came from at threshold %.2f: %.4f",
        *(split, settings["refine"], report["miou"], _leak_text(report)),
        *(settings["cam_threshold"], report["cam_miou"]),
    )
    if settings["refine"].startswith("irn"):
        report["irn"] = _irn_diagnostics(
            cam_set, ir_label_set, irnet, rows, gt, contexts, classes["class_names"], params
        )
        _log_irn(report["irn"])
    return report


def _irn_diagnostics(
    cam_set, ir_label_set, irnet: dict, rows: pd.DataFrame, gt, contexts, class_names, params
) -> dict[str, Any]:
    """The evaluated rows' IR labels, edge maps and walk scores against the ground truth."""
    settings = params["pseudo_masks"]
    missing = sorted(set(rows["id"]) - set(ir_label_set))
    if missing:
        raise KeyError(f"no IR labels for {len(missing)} evaluated image(s), e.g. {missing[:5]}")
    device = stages.resolve_device(params["device"])
    model = jobs.trained_irnet(settings["irnet"], irnet, device)
    evaluated = {i: cam_set[i] for i in rows["id"]}
    return irn_scores.irn_diagnostics(
        {i: ir_label_set[i] for i in rows["id"]},
        jobs.walk_jobs(cam_set, rows, settings["walk"], model, device),
        gt, class_names, params["evaluation"]["thresholds"], settings["walk"]["bg_threshold"],
        contexts, edge_stride=model.stride,
        perfect_edge_walks=irn_scores.gt_edge_walks(evaluated, gt, settings["walk"], model.stride),
    )  # fmt: skip


def _log_irn(scores: dict[str, Any]) -> None:
    labels, edges, walk = scores["ir_labels"], scores["edges"], scores["walk"]

    def shown(value: float | None, digits: int = 3) -> str:
        return "undefined" if value is None else f"{value:.{digits}f}"

    logger.info(
        "IR labels: foreground %s, background %s, ignored %s of the pixels, precision %s; edge "
        "map: best boundary F %s at %s (mean %s on boundaries, %s elsewhere); walk before "
        "thresholding: mIoU %s at its best background score %.2f, %s at the run's %.2f; the "
        "same walk on the ground-truth outlines: mIoU %s",
        *(shown(labels["shares"][k]) for k in ("foreground", "background", "ignored")),
        shown(labels["precision"]), shown(edges["best_f"]), shown(edges["best_threshold"], 2),
        shown(edges["mean_on_boundary"]), shown(edges["mean_elsewhere"]),
        shown(walk["miou"], 4), walk["best_threshold"], shown(walk["miou_at_threshold"], 4),
        walk["threshold"], shown(scores["walk_on_gt_edges"]["miou"], 4),
    )  # fmt: skip
