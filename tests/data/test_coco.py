"""COCO 2014 reader on a tiny generated COCO-layout folder (3 images, 80 categories)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layouts import (
    HEIGHT,
    WIDTH,
    coco_instances,
    coco_key,
    make_coco,
    save_coco_mask,
)  # fmt: skip
from semples.data.coco import CocoSplit, coco_mask_renderers, scan_coco
from semples.data.index import BadItemError, ItemPolicy


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_coco(tmp_path / "coco")


@pytest.fixture
def split(root: Path) -> CocoSplit:
    return CocoSplit.load(root, "val")


@pytest.fixture
def mask_paths(split: CocoSplit, tmp_path: Path) -> dict[str, Path]:
    """Masks written one at a time from the lazy renderers, as the pipeline does."""
    (tmp_path / "masks").mkdir()
    paths = {}
    for image_key, render in coco_mask_renderers([split]).items():
        paths[image_key] = tmp_path / "masks" / f"{image_key}.png"
        save_coco_mask(paths[image_key], render())
    return paths


def test_categories_sorted_by_id_map_to_1_to_80(split):
    assert len(split.class_names) == 80
    assert split.class_names[0] == "cat1"
    assert split.class_names[11] == "cat13"  # id 12 does not exist
    assert split.class_names[79] == "cat90"


def test_image_accessors(split, root):
    assert split.image_ids() == [9, 42, 73]
    assert split.image_key(42) == "COCO_val2014_000000000042"
    assert split.image_path(42) == root / "val2014" / "COCO_val2014_000000000042.jpg"
    assert split.size(9) == (10, 20)


def test_labels_exclude_crowd_only_categories(split):
    assert split.labels(42) == (0, 1, 79)  # categories 1, 2, 90; 44 is crowd only
    assert split.labels(73) == ()


def test_render_mask_paints_small_over_large_and_crowd_on_background_only(split):
    mask = split.render_mask(42)
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
    assert mask[7, 7] == 80  # small category 90 inside the large category 1
    assert mask[15, 15] == 1
    assert mask[3, 36] == 2  # compressed RLE
    assert mask[22, 10] == 1  # crowd band over an instance keeps the instance
    assert mask[28, 10] == 255  # crowd band over background
    assert mask[22, 35] == 255
    assert mask[0, 0] == 0
    assert set(np.unique(mask)) == {0, 1, 2, 80, 255}
    np.testing.assert_array_equal(mask[20:, 31:], 255)


def test_render_mask_crowd_only_image(split):
    mask = split.render_mask(73)
    np.testing.assert_array_equal(mask[:5, :5], 255)
    assert (mask == 255).sum() == 25 and (mask == 0).sum() == WIDTH * HEIGHT - 25


def test_mask_renderers_are_lazy_callables_keyed_by_image_key(split, monkeypatch):
    rendered = []
    monkeypatch.setattr(split, "render_mask", lambda image_id: rendered.append(image_id))
    renderers = coco_mask_renderers([split])
    assert sorted(renderers) == [coco_key(9), coco_key(42), coco_key(73)]
    assert rendered == []
    renderers[coco_key(42)]()
    assert rendered == [42]


def test_malformed_segmentation_is_a_bad_item(root):
    data = coco_instances()
    data["annotations"][0]["segmentation"] = {"size": [HEIGHT, WIDTH]}
    json_path = root / "annotations" / "instances_val2014.json"
    json_path.write_text(json.dumps(data))
    with pytest.raises(BadItemError) as info:
        CocoSplit.load(root, "val").render_mask(42)
    assert str(info.value) == (
        f"{json_path}: annotation 1 of {coco_key(42)}: cannot decode segmentation: 'counts'"
    )
    assert info.value.item_id == coco_key(42)


# --- loading --------------------------------------------------------------------------------


def test_load_missing_json(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        CocoSplit.load(tmp_path, "train")
    expected = tmp_path / "annotations" / "instances_train2014.json"
    assert str(info.value) == f"COCO train annotations not found: {expected}"


def test_load_missing_image_dir(root):
    (root / "val2014").rename(root / "images")
    with pytest.raises(FileNotFoundError) as info:
        CocoSplit.load(root, "val")
    assert str(info.value) == f"COCO val image folder not found: {root / 'val2014'}"


def test_load_broken_json(root):
    json_path = root / "annotations" / "instances_val2014.json"
    json_path.write_text('{"images": [')
    with pytest.raises(ValueError) as info:
        CocoSplit.load(root, "val")
    assert str(info.value) == (
        f"cannot parse COCO annotations {json_path}: Expecting value: line 1 column 13 (char 12)"
    )


def test_load_annotation_with_unknown_category(root):
    data = coco_instances()
    data["annotations"][0]["category_id"] = 12
    json_path = root / "annotations" / "instances_val2014.json"
    json_path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        CocoSplit.load(root, "val")
    assert str(info.value) == f"{json_path}: annotation 1 refers to unknown category id 12"


# --- scan -----------------------------------------------------------------------------------


def test_scan_coco_records(split, root, mask_paths):
    policy = ItemPolicy("skip")
    records = scan_coco([split], mask_paths, policy)
    assert [r.id for r in records] == [coco_key(42), coco_key(73)]
    first = records[0]
    assert first.split == "val"
    assert first.image_path == (root / "val2014" / f"{coco_key(42)}.jpg").resolve().as_posix()
    assert first.mask_path == mask_paths[coco_key(42)].resolve().as_posix()
    assert (first.width, first.height, first.labels) == (WIDTH, HEIGHT, (0, 1, 79))
    assert records[1].labels == ()
    image_9 = root / "val2014" / f"{coco_key(9)}.jpg"
    json_path = root / "annotations" / "instances_val2014.json"
    assert policy.skipped == [
        {
            "id": coco_key(9),
            "split": "val",
            "path": str(image_9),
            "reason": f"image is 20x10 but {json_path} says 10x20",
        }
    ]


def test_scan_coco_raises_on_size_mismatch_by_default(split, mask_paths):
    with pytest.raises(BadItemError, match="image is 20x10 but .* says 10x20"):
        scan_coco([split], mask_paths)


@pytest.fixture
def good_split(root: Path) -> CocoSplit:
    """The split without image 9 (whose json size is wrong)."""
    data = coco_instances()
    data["images"] = [image for image in data["images"] if image["id"] != 9]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 9]
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return CocoSplit.load(root, "val")


def test_scan_coco_missing_mask_path(good_split, root, mask_paths):
    del mask_paths[coco_key(73)]
    with pytest.raises(BadItemError) as info:
        scan_coco([good_split], mask_paths)
    image = root / "val2014" / f"{coco_key(73)}.jpg"
    assert str(info.value) == f"{image}: no mask path given for '{coco_key(73)}'"
    assert info.value.item_id == coco_key(73)


def test_scan_coco_mask_size_mismatch(good_split, root, mask_paths):
    save_coco_mask(mask_paths[coco_key(73)], np.zeros((WIDTH, HEIGHT), dtype=np.uint8))
    with pytest.raises(BadItemError) as info:
        scan_coco([good_split], mask_paths)
    image = root / "val2014" / f"{coco_key(73)}.jpg"
    mask = mask_paths[coco_key(73)]
    assert str(info.value) == f"{mask}: mask 30x40 does not match image 40x30 ({image})"


def test_scan_coco_mask_values_outside_classes(good_split, mask_paths):
    save_coco_mask(mask_paths[coco_key(73)], np.full((HEIGHT, WIDTH), 81, dtype=np.uint8))
    with pytest.raises(BadItemError) as info:
        scan_coco([good_split], mask_paths)
    assert (
        str(info.value) == f"{mask_paths[coco_key(73)]}: mask has values outside 0..80 and 255: 81"
    )


def test_scan_coco_missing_image(good_split, root, mask_paths):
    image = root / "val2014" / f"{coco_key(73)}.jpg"
    image.unlink()
    policy = ItemPolicy("skip")
    assert [r.id for r in scan_coco([good_split], mask_paths, policy)] == [coco_key(42)]
    assert policy.skipped == [
        {"id": coco_key(73), "split": "val", "path": str(image), "reason": "image file not found"}
    ]


def test_scan_coco_decode_images_flag(good_split, root, mask_paths):
    image = root / "val2014" / f"{coco_key(73)}.jpg"
    image.write_bytes(image.read_bytes()[:-200])
    assert len(scan_coco([good_split], mask_paths, decode_images=False)) == 2
    with pytest.raises(BadItemError, match="cannot read image: image file is truncated"):
        scan_coco([good_split], mask_paths)
