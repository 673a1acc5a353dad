"""What the segmentation pipeline's nodes do, free of Kedro: pair images with a pseudo-mask
version, train in a scratch work dir and keep only the result, predict, evaluate."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from semples.cams import labelled_rows
from semples.datasets.mask_set import MaskSet
from semples.segmentation import runner
from semples.segmentation.config import Pairs, TrainSettings, fingerprint, training_config

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


def check_run_params(train: Mapping[str, Any]) -> TrainSettings:
    """The recipe overrides of ``segmentation.train``; an unknown key is an error (a typo would
    otherwise silently keep the recipe's value)."""
    overrides = {key: value for key, value in train.items() if key not in RUN_KEYS}
    known = {f.name for f in fields(TrainSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown segmentation.train key(s) {unknown}; known: {sorted(known | RUN_KEYS)}"
        )
    return TrainSettings(**overrides)


def per_process_batch(total: int, processes: int) -> int:
    """The configured batch is the total over all processes, as in the paper's single GPU."""
    if total % processes:
        raise ValueError(f"batch size {total} does not divide over {processes} processes")
    return total // processes


def run_config(
    params: Mapping[str, Any], classes: Sequence[str], train_pairs: Pairs, val_pairs: Pairs
):
    """The MMEngine config of this run from ``params`` (the ``segmentation`` section)."""
    train = params["train"]
    settings = check_run_params(train)
    processes = int(train.get("processes", 1))
    cfg = training_config(
        params["config"], classes=classes, train_pairs=train_pairs, val_pairs=val_pairs,
        settings=settings, seed=int(params["seed"]), backbone_weights=params["backbone_weights"],
        backbone_prefix=params.get("backbone_prefix"), cfg_options=train.get("cfg_options"),
    )  # fmt: skip
    cfg.train_dataloader.batch_size = per_process_batch(cfg.train_dataloader.batch_size, processes)
    cfg.work_dir = str(Path(train["work_dir"]) / f"deeplab-{fingerprint(cfg)}")
    return cfg, processes


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
