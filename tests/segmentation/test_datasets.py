"""LabelMapPairs: explicit (image, label map) pairs through MMSegmentation's loading pipeline."""

import numpy as np
import pytest
from PIL import Image

from semples.segmentation.datasets import LabelMapPairs

PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]


def _pair(folder, name, value):
    image, label = folder / f"{name}.jpg", folder / f"{name}.png"
    Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(image)
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9], mask[0, 0] = value, 255
    Image.fromarray(mask, mode="L").save(label)
    return str(image), str(label)


def test_items_carry_the_label_indices_and_the_classes(tmp_path):
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    pairs = [_pair(tmp_path, "a", 1), _pair(tmp_path, "b", 2)]
    dataset = LabelMapPairs(pairs, classes=["background", "cat", "dog"], pipeline=PIPELINE)
    assert len(dataset) == 2 and dataset.metainfo["classes"] == ("background", "cat", "dog")
    sample = dataset[1]
    labels = sample["data_samples"].gt_sem_seg.data.numpy()[0]
    assert labels.shape == (12, 16) and set(np.unique(labels)) == {0, 2, 255}
    assert sample["inputs"].shape == (3, 12, 16)


def test_missing_files_and_classes_are_named(tmp_path):
    with pytest.raises(ValueError, match="needs the class names"):
        LabelMapPairs([], classes=[])
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        LabelMapPairs([(str(tmp_path / "nowhere.jpg"), "x.png")], classes=["background"])
    with pytest.raises(ValueError, match="no \\(image, label map\\) pairs"):
        LabelMapPairs([], classes=["background"])
