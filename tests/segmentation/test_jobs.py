"""The segmentation pipeline's steps without Kedro: pairs, run parameters, batch per process."""

import numpy as np
import pandas as pd
import pytest

from layouts import PAIR_CLASSES
from semples.datasets.mask_set import MaskSet, write_item
from semples.parameters import Segmentation, SegmentationTest, SegmentationTrain
from semples.segmentation import jobs
from semples.segmentation.config import TrainSettings


def _index(ids, split="train"):
    return pd.DataFrame({"id": ids, "split": split, "image_path": [f"{i}.jpg" for i in ids],
                         "mask_path": [f"{i}.png" for i in ids]})  # fmt: skip


def _mask_set(folder, ids):
    version = folder / "2026-01-01T00.00.00.000Z" / "pseudo_masks"
    version.mkdir(parents=True)
    for item in ids:
        write_item(version, item, np.zeros((2, 2), np.uint8))
    return MaskSet(version)


def test_split_rows_are_in_id_order_and_capped():
    index = pd.concat([_index(["c", "a", "b"]), _index(["v"], "val")])
    assert jobs.split_rows(index, ["train"])["id"].tolist() == ["a", "b", "c"]
    assert jobs.split_rows(index, ["train"], max_images=2)["id"].tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="no image in split"):
        jobs.split_rows(index, ["test"])


def test_training_pairs_come_from_the_mask_set_version(tmp_path, caplog):
    masks = _mask_set(tmp_path, ["a", "b"])
    assert jobs.mask_set_version(masks) == "2026-01-01T00.00.00.000Z"
    pairs = jobs.training_pairs(masks, _index(["a", "b", "c"]))
    assert pairs == [("a.jpg", str(masks.folder / "a.png")), ("b.jpg", str(masks.folder / "b.png"))]
    assert "1 of 3 training images have no pseudo mask" in caplog.text
    with pytest.raises(ValueError, match="hold none of the 1 training images.*cams.splits"):
        jobs.training_pairs(masks, _index(["z"]))


def test_validation_pairs_skip_images_without_ground_truth():
    rows = _index(["a", "b"])
    rows.loc[1, "mask_path"] = None
    assert jobs.validation_pairs(rows) == [("a.jpg", "a.png")]


def test_the_recipe_overrides_leave_out_the_run_keys():
    train = SegmentationTrain(lr=0.1, processes=2, work_dir="w", cfg_options={"a": 1})
    assert jobs.recipe_overrides(train) == TrainSettings(lr=0.1)


def test_the_batch_is_the_total_over_processes():
    assert jobs.per_process_batch(10, 2) == 5
    assert jobs.per_process_batch(12, 3) == 4
    with pytest.raises(ValueError, match="batch size 10 does not divide over 4 processes"):
        jobs.per_process_batch(10, 4)


def test_run_config_puts_the_work_dir_under_a_fingerprint(tmp_path):
    run = Segmentation(
        config="deeplabv2_r18-d8_1xb10-3k_toy-64x64", train_splits=["train"], val_split="val",
        train=SegmentationTrain(processes=2, work_dir=str(tmp_path)),
        test=SegmentationTest(scales=[1.0], flip=False),
    )  # fmt: skip
    cfg, processes = jobs.run_config(run, PAIR_CLASSES, [("a.jpg", "a.png")], [])
    assert processes == 2 and cfg.train_dataloader.batch_size == 5
    assert cfg.work_dir.startswith(str(tmp_path / "deeplab-"))
