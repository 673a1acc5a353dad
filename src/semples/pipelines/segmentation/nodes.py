"""segmentation nodes: thin adapters over semples.segmentation."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from semples.cams import gt_mask_loaders
from semples.segmentation import jobs
from semples.segmentation.evaluation import segmentation_report
from semples.segmentation.predict import build_segmentor, prediction_jobs
from semples.training.stages import resolve_device

logger = logging.getLogger(__name__)


def _class_names(classes: dict) -> list[str]:
    return ["background", *classes["class_names"]]


def _val_rows(image_index: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    return jobs.split_rows(image_index, [params["val_split"]], params["max_images"])


def train_deeplab(
    pseudo_masks, image_index: pd.DataFrame, classes: dict, params: dict[str, Any]
) -> tuple[dict, pd.DataFrame]:
    train_rows = jobs.split_rows(image_index, params["train_splits"], params["max_images"])
    train_pairs = jobs.training_pairs(pseudo_masks, train_rows)
    val_pairs = jobs.validation_pairs(_val_rows(image_index, params))
    cfg, processes = jobs.run_config(params, _class_names(classes), train_pairs, val_pairs)
    version = jobs.mask_set_version(pseudo_masks)
    logger.info("DeepLabV2 (%s) on %d images of pseudo masks %s, validated on %d; work dir %s",
                params["config"], len(train_pairs), version, len(val_pairs),
                cfg.work_dir)  # fmt: skip
    model, history = jobs.fit_deeplab(cfg, processes)
    model["pseudo_masks_version"] = version
    return model, history


def predict_segmentation(deeplab: dict, image_index: pd.DataFrame, params: dict[str, Any]) -> dict:
    test = params["test"]
    model = build_segmentor(deeplab["model_config"], deeplab["state_dict"],
                            resolve_device(params["device"]))  # fmt: skip
    rows = _val_rows(image_index, params)
    return prediction_jobs(model, rows, test["scales"], test["flip"], test["crf"])


def evaluate_segmentation(
    predictions,
    pseudo_masks,
    deeplab: dict,
    history: pd.DataFrame,
    image_index: pd.DataFrame,
    classes: dict,
    params: dict[str, Any],
) -> dict[str, Any]:
    rows = _val_rows(image_index, params)
    gt = gt_mask_loaders(rows[rows["mask_path"].notna()], len(classes["class_names"]))
    names = _class_names(classes)
    report = segmentation_report(predictions, pseudo_masks, deeplab, history, gt, names, params)
    logger.info("DeepLabV2 mIoU on %s: %.4f (single scale %s); its pseudo masks on the same "
                "images: %s", report["split"], report["miou"], report["single_scale_miou"],
                report["pseudo_mask_miou"])  # fmt: skip
    return report
