"""What the segmentation pipeline's nodes do, free of Kedro: pair images with a pseudo-mask
version, train in a scratch work dir and keep only the result, predict, evaluate. The nodes are
:func:`train_deeplab`, :func:`predict_segmentation` and :func:`evaluate_segmentation`."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from semples.cams import gt_mask_loaders, labelled_rows
from semples.datasets.mask_set import MaskSet
from semples.parameters import Segmentation, SegmentationTrain, parse_section
from semples.segmentation import runner
from semples.segmentation.config import Pairs, TrainSettings, fingerprint, training_config
from semples.segmentation.evaluation import segmentation_report
from semples.segmentation.predict import build_segmentor, prediction_jobs
from semples.training.stages import resolve_device

logger = logging.getLogger(__name__)

RUN_KEYS = {"processes", "work_dir", "cfg_options"}


def split_rows(
    image_index: pd.DataFrame, splits: Sequence[str], max_images: int | None = None
) -> pd.DataFrame:
    """Rows of ``splits``, one per image, in id order, the first ``max_images`` of them."""
    rows = labelled_rows(image_index, splits).sort_values("id")
    return rows if max_images is None else rows.head(max_images)


def mask_set_version(mask_set: MaskSet) -> str:
    """The Kedro version (timestamp folder) a loaded mask set comes from."""
    return mask_set.folder.parent.name


def training_pairs(mask_set: MaskSet, rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(image, pseudo mask) for the rows the mask set holds; none is an error naming the set."""
    present = rows[rows["id"].isin(list(mask_set))]
    if present.empty:
        raise ValueError(
            f"the pseudo masks in {mask_set.folder} hold none of the {len(rows)} training images "
            f"(e.g. {rows['id'].iloc[0]!r}); run pseudo_labels with cams.splits covering them"
        )
    if len(present) < len(rows):
        logger.warning("%d of %d training images have no pseudo mask in %s; trained without them",
                       len(rows) - len(present), len(rows), mask_set.folder)  # fmt: skip
    return [(row.image_path, str(mask_set.path(row.id))) for row in present.itertuples()]


def validation_pairs(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(image, ground-truth mask) for the rows that have ground truth."""
    labelled = rows[rows["mask_path"].notna()]
    return [(row.image_path, row.mask_path) for row in labelled.itertuples()]


def recipe_overrides(train: SegmentationTrain) -> TrainSettings:
    """The recipe overrides of ``segmentation.train`` (the schema rejects unknown keys)."""
    return TrainSettings(**train.model_dump(exclude=RUN_KEYS))


def per_process_batch(total: int, processes: int) -> int:
    """The configured batch is the total over all processes, as in the paper's single GPU."""
    if total % processes:
        raise ValueError(f"batch size {total} does not divide over {processes} processes")
    return total // processes


def run_config(run: Segmentation, classes: Sequence[str], train_pairs: Pairs, val_pairs: Pairs):
    """The MMEngine config of this run (the typed ``segmentation`` section) and its process
    count."""
    train = run.train
    cfg = training_config(
        run.config, classes=classes, train_pairs=train_pairs, val_pairs=val_pairs,
        settings=recipe_overrides(train), seed=run.seed, backbone_weights=run.backbone_weights,
        backbone_prefix=run.backbone_prefix, cfg_options=train.cfg_options,
    )  # fmt: skip
    batch = per_process_batch(cfg.train_dataloader.batch_size, train.processes)
    cfg.train_dataloader.batch_size = batch
    cfg.work_dir = str(Path(train.work_dir) / f"deeplab-{fingerprint(cfg)}")
    return cfg, train.processes


def fit_deeplab(cfg, processes: int = 1) -> tuple[dict, pd.DataFrame]:
    """Train, then return the model (weights, its config, iterations) and the loss history;
    the work dir is scratch and goes once the result is in hand (a failed run keeps it, and
    rerunning the same config resumes from its latest checkpoint)."""
    checkpoint_path = runner.train(cfg, processes)
    state_dict, iterations = runner.model_state(checkpoint_path)
    history = runner.training_history(cfg.work_dir)
    shutil.rmtree(cfg.work_dir, ignore_errors=True)
    model = dict(state_dict=state_dict, model_config=cfg.model.to_dict(), iterations=iterations)
    return model, history


def _class_names(classes: Mapping[str, Any]) -> list[str]:
    return ["background", *classes["class_names"]]


def _val_rows(image_index: pd.DataFrame, run: Segmentation) -> pd.DataFrame:
    return split_rows(image_index, [run.val_split], run.max_images)


def _typed(params: Mapping[str, Any]) -> Segmentation:
    return parse_section("segmentation", params)


def train_deeplab(
    pseudo_masks: MaskSet, image_index: pd.DataFrame, classes: dict, params: Mapping[str, Any]
) -> tuple[dict, pd.DataFrame]:
    """DeepLabV2 trained on a pseudo-mask version (which it records) and its loss history."""
    run = _typed(params)
    train_rows = split_rows(image_index, run.train_splits, run.max_images)
    train_pairs = training_pairs(pseudo_masks, train_rows)
    val_pairs = validation_pairs(_val_rows(image_index, run))
    cfg, processes = run_config(run, _class_names(classes), train_pairs, val_pairs)
    version = mask_set_version(pseudo_masks)
    logger.info("DeepLabV2 (%s) on %d images of pseudo masks %s, validated on %d; work dir %s",
                run.config, len(train_pairs), version, len(val_pairs),
                cfg.work_dir)  # fmt: skip
    model, history = fit_deeplab(cfg, processes)
    model["pseudo_masks_version"] = version
    return model, history


def predict_segmentation(
    deeplab: dict, image_index: pd.DataFrame, params: Mapping[str, Any]
) -> dict:
    """Lazy prediction jobs (multi-scale, flip, CRF as configured) on the validation split."""
    run = _typed(params)
    test = run.test
    model = build_segmentor(deeplab["model_config"], deeplab["state_dict"],
                            resolve_device(run.device))  # fmt: skip
    crf = None if test.crf is None else test.crf.model_dump()
    return prediction_jobs(model, _val_rows(image_index, run), test.scales, test.flip, crf)


def evaluate_segmentation(
    predictions: Mapping,
    pseudo_masks: MaskSet,
    deeplab: dict,
    history: pd.DataFrame,
    image_index: pd.DataFrame,
    classes: dict,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The segmentation report on the validation split, its pseudo masks' score beside it."""
    run = _typed(params)
    rows = _val_rows(image_index, run)
    gt = gt_mask_loaders(rows[rows["mask_path"].notna()], len(classes["class_names"]))
    names = _class_names(classes)
    report = segmentation_report(predictions, pseudo_masks, deeplab, history, gt, names, run)
    logger.info("DeepLabV2 mIoU on %s: %.4f (single scale %s); its pseudo masks on the same "
                "images: %s", report["split"], report["miou"], report["single_scale_miou"],
                report["pseudo_mask_miou"])  # fmt: skip
    return report
