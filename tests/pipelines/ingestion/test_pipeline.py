"""The ingestion pipeline in process: SequentialRunner over a catalog in a temporary folder."""

from dataclasses import asdict

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.runner import SequentialRunner

from catalogs import keeping_catalog
from semples.data.toy_world import TOY_CLASSES, ToyWorldConfig
from semples.datasets import MaskSetDataset
from semples.pipelines.ingestion import create_pipeline

PARAMS = {
    "dataset": "toy",
    "on_bad_item": "raise",
    "toy": {"num_train": 6, "num_val": 3, "num_captioned": 4, "image_size": 48},
    "voc": {"root": None, "splits": ["train"], "mask_dirs": ["SegmentationClassAug"]},
    "coco": {"root": None, "splits": ["val"]},
}


def run(tmp_path, pipeline, params=PARAMS) -> DataCatalog:
    catalog = keeping_catalog(
        {
            "params:ingestion": MemoryDataset(params),
            **{
                name: MaskSetDataset(
                    path=str(tmp_path / name), version=Version(None, None), progress=False
                )
                for name in ("generated_images", "generated_masks", "generated_context_masks")
            },
        },
        keep=["image_index", "caption_index", "dataset_classes", "ingestion_report@json"],
    )
    SequentialRunner().run(pipeline, catalog)
    return catalog


def test_toy_ingestion_builds_index_captions_and_report(tmp_path):
    catalog = run(tmp_path, create_pipeline())

    index = catalog.load("image_index")
    assert list(index.columns) == [
        "id", "split", "image_path", "mask_path", "context_path", "width", "height", "labels",
        "label_names",
    ]  # fmt: skip
    assert index["split"].value_counts().to_dict() == {"train": 6, "val": 3}
    assert all(len(labels) == len(TOY_CLASSES) and sum(labels) >= 1 for labels in index["labels"])
    masks = catalog.load("generated_masks")
    row = index.iloc[0]
    assert masks.path(row["id"]).as_posix() == row["mask_path"]
    present = sorted({int(v) - 1 for v in pd.unique(masks.read(row["id"]).ravel()) if v})
    assert [TOY_CLASSES[k] for k in present] == list(row["label_names"])
    contexts = catalog.load("generated_context_masks")
    assert contexts.path(row["id"]).as_posix() == row["context_path"]
    context = contexts.read(row["id"])
    assert context.shape == (48, 48) and not context[masks.read(row["id"]) > 0].any()

    captions = catalog.load("caption_index")
    assert len(captions) == 4 and captions["caption"].str.startswith("a photo of ").all()
    report = catalog.load("ingestion_report@json")
    assert report["num_images"] == 9 and report["num_skipped"] == 0
    # The toy world's parameters, defaults included, name the data in every later report (runs
    # on other worlds are other series).
    world = asdict(ToyWorldConfig(**PARAMS["toy"]))
    assert catalog.load("dataset_classes")["dataset_params"] == world
    assert sum(report["class_frequency"].values()) == sum(map(sum, index["labels"]))


def test_sliced_from_the_index_reports_without_regenerating(tmp_path):
    catalog = run(tmp_path, create_pipeline())
    index = catalog.load("image_index").iloc[:4]
    sliced = keeping_catalog(
        {
            "image_index": MemoryDataset(index),
            "dataset_classes": MemoryDataset({"class_names": list(TOY_CLASSES)}),
            "skipped_items": MemoryDataset(pd.DataFrame(columns=["id", "split", "path", "reason"])),
            "params:ingestion": MemoryDataset(PARAMS),
        },
        keep=["ingestion_report@json"],
    )
    SequentialRunner().run(create_pipeline().from_nodes("report_ingestion"), sliced)
    assert sliced.load("ingestion_report@json")["num_images"] == 4


def test_unknown_dataset_name_is_named_in_the_error(tmp_path):
    with pytest.raises(ValueError, match=r"ingestion\.dataset = 'imagenet': Input should be 'toy'"):
        run(tmp_path, create_pipeline(), {**PARAMS, "dataset": "imagenet"})
