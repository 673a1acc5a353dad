"""The dataset dispatch of ingestion and its report."""

import pandas as pd
import pytest

from semples.data import ingest
from semples.data.index import IndexRecord, records_to_frame
from semples.data.toy_world import ToyWorldConfig, render_scene
from semples.parameters import Ingestion, parse_section

NAMES = ("boat", "train", "cow")


def typed(params: dict) -> Ingestion:
    return parse_section("ingestion", params)


def test_report_counts_images_per_split_and_class_frequencies(tmp_path):
    records = [
        IndexRecord("a", "train", "a.jpg", "a.png", 4, 3, (0, 2)),
        IndexRecord("b", "train", "b.jpg", "b.png", 4, 3, (2,)),
        IndexRecord("a", "train_aug", "a.jpg", "a.png", 4, 3, (0, 2)),
    ]
    skipped = [{"id": "c", "split": "val", "path": "c.jpg", "reason": "image file not found"}]
    run = typed({"dataset": "voc", "voc": {"root": str(tmp_path), "splits": ["train"]}})

    report = ingest.ingestion_report(records_to_frame(records, NAMES), NAMES, skipped, run)

    assert report["num_images"] == 3 and report["num_unique_images"] == 2
    assert report["per_split"] == {"train": 2, "train_aug": 1}
    assert report["class_frequency"] == {"boat": 2, "train": 0, "cow": 3}
    assert report["class_frequency_by_split"]["train"] == {"boat": 1, "train": 0, "cow": 2}
    assert report["num_skipped"] == 1 and report["skipped"] == skipped
    assert report["params"] == {"dataset": "voc", "voc": run.voc.model_dump(mode="json")}


def test_report_of_an_empty_index():
    empty = records_to_frame([], NAMES)
    report = ingest.ingestion_report(empty, NAMES, [], typed({"dataset": "toy"}))
    assert report["num_images"] == 0
    assert report["class_frequency"] == {"boat": 0, "train": 0, "cow": 0}


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_a_real_dataset_without_root_says_how_to_set_it(name):
    with pytest.raises(ValueError, match=f"--params={name}_root=PATH"):
        typed({"dataset": name, name: {"root": None, "splits": ["val"]}})


def test_voc_generates_no_files(tmp_path):
    voc = {"root": str(tmp_path), "splits": ["val"]}
    files = ingest.generate_files(typed({"dataset": "voc", "voc": voc}))
    assert files.images == {} and files.masks == {} and files.contexts == {}
    assert files.annotations.empty


def test_toy_world_generates_a_context_map_per_labelled_scene():
    toy = {"num_train": 2, "num_val": 1, "num_captioned": 2, "image_size": 48}
    files = ingest.generate_files(typed({"dataset": "toy", "toy": toy}))
    ids = ["train_000000", "train_000001", "val_000000"]
    assert sorted(files.contexts) == sorted(files.masks) == ids
    scene = render_scene(ToyWorldConfig(**toy), "val", 0)
    assert files.contexts["val_000000"].tobytes() == scene.context.tobytes()


def test_index_rows_of_datasets_without_context_maps_have_no_context_path():
    records = [IndexRecord("a", "train", "a.jpg", "a.png", 4, 3, (0,))]
    assert records_to_frame(records, NAMES)["context_path"].isna().all()


def test_a_toy_scene_without_its_context_map_is_named():
    annotations = pd.DataFrame(
        [("train_000000", "train", [0], None)], columns=list(ingest.ANNOTATION_COLUMNS)
    )
    images = masks = _Files({"train_000000": "/x/train_000000.png"})
    run = typed({"dataset": "toy", "toy": {"num_train": 1, "num_val": 0, "num_captioned": 0}})
    with pytest.raises(ValueError, match="no context map for toy scene 'train_000000'"):
        ingest.build_index(run, images, masks, _Files({}), annotations)


class _Files(dict):
    """A saved mask set's interface as build_index uses it: ids and their paths."""

    def path(self, item_id: str) -> str:
        return self[item_id]
