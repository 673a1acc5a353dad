"""The reports of a pseudo_labels run, scored on the evaluation split against the ground truth:
its CAMs with each training stage's generator beside them, and its pseudo masks with the CAMs
they came from and IRN's intermediate results."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from semples import cams, viz
from semples.data.images import read_rgb
from semples.metrics import evaluate_label_maps
from semples.parameters import PseudoLabels
from semples.refine import irn_scores, jobs
from semples.training import stages

logger = logging.getLogger(__name__)

# The generator weights each stage's scores in the CAM report come from.
STAGE_WEIGHTS = {
    "initial": "initial_generator_weights",
    "stage1": "stage1_checkpoint",
    "stage3": "stage3_checkpoint",
}


def _evaluated(image_index: pd.DataFrame, split: str, saved, num_classes: int):
    """The rows of ``split`` that ``saved`` holds, and their ground-truth loaders."""
    rows = cams.labelled_rows(image_index, [split])
    rows = rows[rows["id"].isin(list(saved))]
    return rows, cams.gt_mask_loaders(rows, num_classes)


def _report_params(run: PseudoLabels, classes: dict) -> dict[str, Any]:
    """The section's parameters plus the dataset, so that runs on different data are told
    apart."""
    return {
        **run.model_dump(mode="json"),
        "dataset": classes.get("dataset"),
        "dataset_params": classes.get("dataset_params"),
    }


def _leak_text(report: dict[str, Any]) -> str:
    overall = (report["context_leak"] or {}).get("overall")
    return "" if overall is None else f", context leak {overall:.4f}"


def _score_stages(
    states: dict[str, dict], rows: pd.DataFrame, gt, contexts, names: list, run: PseudoLabels
) -> dict[str, dict]:
    """Each stage's generator scored in memory on the evaluation rows, logged one per line."""
    evaluation = run.evaluation
    device = stages.resolve_device(run.device)

    def score(name: str, state: dict) -> dict:
        generator = stages.generator_module(run.generator, len(names), state).to(device)
        report = cams.evaluate_generator(
            generator, rows, gt, names, evaluation.thresholds,
            evaluation.stage_scales, evaluation.stage_flip, device, contexts,
        )  # fmt: skip
        return {**report, "source": STAGE_WEIGHTS[name]}

    skipped = {f"stage{n}": reason for n, reason in stages.skipped_stages(run).items()}
    reports = cams.evaluate_stages(states, skipped, score)
    for name, report in reports.items():
        logger.info(
            "CAM mIoU of %s on %s (%s, scales %s): %.4f at threshold %.2f%s%s",
            *(name, evaluation.split, report["source"], report["scales"]),
            *(report["miou"], report["best_threshold"], _leak_text(report)),
            f" (skipped: {report['skip_reason']})" if report["skipped"] else "",
        )
    return reports


def cam_report(
    cam_set,
    image_index: pd.DataFrame,
    classes: dict,
    states: dict[str, dict],
    run: PseudoLabels,
) -> tuple[dict[str, Any], Figure]:
    """The CAM report (``cam_metrics.json``): the saved CAMs over the evaluation split at every
    background threshold, each stage's generator in ``states`` (``initial``, ``stage1``,
    ``stage3``: generator weights) scored alike in memory, the context leak, the run's
    parameters; and the overlay figure of the first few images."""
    names = classes["class_names"]
    evaluation = run.evaluation
    split = evaluation.split
    rows, gt = _evaluated(image_index, split, cam_set, len(names))
    contexts = cams.context_map_loaders(rows, len(names))
    report = cams.evaluate_cams(
        {i: cam_set[i] for i in rows["id"]}, gt, names, evaluation.thresholds, contexts
    )
    logger.info(
        "CAM mIoU on %s: %.4f at threshold %.2f (trivial map: %.4f, %d images)%s",
        *(split, report["miou"], report["best_threshold"]),
        *(report["trivial_miou"], report["num_images"], _leak_text(report)),
    )
    report["stages"] = _score_stages(states, rows, gt, contexts, names, run)
    report.update(split=split, params=_report_params(run, classes))
    shown = rows.head(evaluation.overlay_images)
    figure = viz.cam_overlay_figure(
        [read_rgb(p) for p in shown["image_path"]],
        [cam_set.read(i) for i in shown["id"]],
        names,
        [gt[i]() for i in shown["id"]],
    )
    return report, figure


def pseudo_mask_report(
    mask_set,
    cam_set,
    ir_label_set,
    irnet: dict,
    image_index: pd.DataFrame,
    classes: dict,
    run: PseudoLabels,
) -> dict[str, Any]:
    """The pseudo-mask report (``pseudo_mask_metrics.json``): the pseudo masks over the
    evaluation split, the CAMs they came from at the run's threshold, the context leak, and in
    the IRN modes IRN's intermediate results (IR labels, edge map, walk)."""
    settings = run.pseudo_masks
    names = ["background", *classes["class_names"]]
    split = run.evaluation.split
    rows, gt = _evaluated(image_index, split, mask_set, len(classes["class_names"]))
    contexts = cams.context_map_loaders(rows, len(classes["class_names"]))
    report = evaluate_label_maps({i: mask_set[i] for i in rows["id"]}, gt, names, contexts)
    thresholded = jobs.pseudo_mask_jobs(
        cam_set, rows, "none", {"cam_threshold": settings.cam_threshold}
    )
    report["cam_miou"] = evaluate_label_maps(thresholded, gt, names)["miou"]
    report.update(
        split=split,
        refine=settings.refine,
        params=_report_params(run, classes),
    )
    logger.info(
        "Pseudo-mask mIoU on %s (%s): %.4f%s; the CAMs they came from at threshold %.2f: %.4f",
        *(split, settings.refine, report["miou"], _leak_text(report)),
        *(settings.cam_threshold, report["cam_miou"]),
    )
    if settings.refine.startswith("irn"):
        report["irn"] = _irn_diagnostics(
            cam_set, ir_label_set, irnet, rows, gt, contexts, classes["class_names"], run
        )
        _log_irn(report["irn"])
    return report


def _irn_diagnostics(
    cam_set, ir_label_set, irnet: dict, rows: pd.DataFrame, gt, contexts, class_names,
    run: PseudoLabels,
) -> dict[str, Any]:
    """The evaluated rows' IR labels, edge maps and walk scores against the ground truth."""
    settings = run.pseudo_masks
    walk = settings.walk.model_dump()
    missing = sorted(set(rows["id"]) - set(ir_label_set))
    if missing:
        raise KeyError(f"no IR labels for {len(missing)} evaluated image(s), e.g. {missing[:5]}")
    device = stages.resolve_device(run.device)
    model = jobs.trained_irnet(settings.irnet, irnet, device)
    evaluated = {i: cam_set[i] for i in rows["id"]}
    return irn_scores.irn_diagnostics(
        {i: ir_label_set[i] for i in rows["id"]},
        jobs.walk_jobs(cam_set, rows, walk, model, device),
        gt, class_names, run.evaluation.thresholds, settings.walk.bg_threshold,
        contexts, edge_stride=model.stride,
        perfect_edge_walks=irn_scores.gt_edge_walks(evaluated, gt, walk, model.stride),
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
