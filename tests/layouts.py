"""Tiny dataset folders in the real VOC 2012 and COCO 2014 layouts, made by the tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

PALETTE = list(np.random.default_rng(1).integers(0, 256, 256 * 3, dtype=np.uint8))

# id -> (width, height, mask classes in SegmentationClass, xml object names)
IMAGES = {
    "2007_000001": (32, 24, [1], ["aeroplane", "person"]),
    "2007_000002": (24, 32, [8, 12], ["cat", "dog"]),
    "2007_000003": (30, 20, [15], ["person"]),
    "2007_000004": (20, 30, [], []),
}
AUG_ONLY = "2008_000005"  # only in SegmentationClassAug and train_aug, like the SBD images
SPLITS = {
    "train": "2007_000001\n\n2007_000002   \n",
    "val": "2007_000003\n2007_000004\n",
    "train_aug": f"2007_000001\n2007_000002\n{AUG_ONLY}\n",
}


def save_jpeg(path: Path, width: int, height: int) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def save_mask(path: Path, width: int, height: int, classes: list[int], palette: bool = True):
    """Background, one horizontal band per class, a 255 border (as in VOC masks)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for band, value in enumerate(classes):
        mask[2 + 4 * band : 5 + 4 * band, 2:-2] = value
    mask[0, :] = 255
    image = Image.fromarray(mask)
    if palette:
        image.putpalette(PALETTE)
    image.save(path)


def save_xml(path: Path, names: list[str]) -> None:
    objects = "".join(
        f"<object><name>{name}</name><difficult>0</difficult>"
        f"<part><name>head</name></part></object>"
        for name in names
    )
    path.write_text(f"<annotation><filename>x.jpg</filename>{objects}</annotation>")


def make_voc(root: Path, annotations: bool = False) -> Path:
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        (root / folder).mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, text in SPLITS.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(text)
    for image_id, (width, height, classes, _) in IMAGES.items():
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", width, height)
        save_mask(root / "SegmentationClass" / f"{image_id}.png", width, height, classes)
    # Aug masks (grayscale, as SBD ships them) for 1 and 2 win over SegmentationClass.
    save_mask(root / "SegmentationClassAug" / "2007_000001.png", 32, 24, [1, 15], palette=False)
    save_mask(root / "SegmentationClassAug" / "2007_000002.png", 24, 32, [8, 12], palette=False)
    save_jpeg(root / "JPEGImages" / f"{AUG_ONLY}.jpg", 16, 16)
    save_mask(root / "SegmentationClassAug" / f"{AUG_ONLY}.png", 16, 16, [20], palette=False)
    if annotations:
        (root / "Annotations").mkdir()
        for image_id, (*_, names) in IMAGES.items():
            save_xml(root / "Annotations" / f"{image_id}.xml", names)
        save_xml(root / "Annotations" / f"{AUG_ONLY}.xml", ["tvmonitor"])
    return root


# The 80 COCO category ids: 1..90 with gaps, as in instances_*2014.json.
CATEGORY_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
WIDTH, HEIGHT = 40, 30
IMAGE_IDS = (42, 73, 9)  # 9: its json size is wrong (the file is 20x10)


def coco_key(image_id: int, split: str = "val") -> str:
    return f"COCO_{split}2014_{image_id:012d}"


def rectangle(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE: column-major run lengths, starting with a run of zeros."""
    flat = binary.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(binary.shape), "counts": counts}


def compressed_rle(binary: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def band(rows: slice, cols: slice) -> np.ndarray:
    binary = np.zeros((HEIGHT, WIDTH), dtype=bool)
    binary[rows, cols] = True
    return binary


def annotation(ann_id: int, image_id: int, category: int, segmentation, area, crowd=0) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "segmentation": segmentation,
        "area": area,
        "iscrowd": crowd,
        "bbox": [0, 0, 1, 1],
    }


def coco_instances(split: str = "val") -> dict:
    categories = [{"id": i, "name": f"cat{i}", "supercategory": "x"} for i in CATEGORY_IDS]
    random.Random(0).shuffle(categories)  # the order in the file must not matter
    return {
        "images": [
            {"id": 42, "file_name": f"{coco_key(42, split)}.jpg", "width": WIDTH, "height": HEIGHT},
            {"id": 73, "file_name": f"{coco_key(73, split)}.jpg", "width": WIDTH, "height": HEIGHT},
            {"id": 9, "file_name": f"{coco_key(9, split)}.jpg", "width": 10, "height": 20},
        ],
        "annotations": [
            # small first: painting in file order would let the large one cover it
            annotation(1, 42, 90, rectangle(5, 5, 10, 10), area=25),
            annotation(2, 42, 1, rectangle(2, 2, 30, 25), area=644),
            annotation(3, 42, 2, compressed_rle(band(slice(0, 6), slice(32, 40))), area=48),
            annotation(4, 42, 44, uncompressed_rle(band(slice(20, 30), slice(0, 40))), 400, 1),
            annotation(5, 73, 44, uncompressed_rle(band(slice(0, 5), slice(0, 5))), 25, 1),
            annotation(6, 9, 3, rectangle(1, 1, 5, 5), area=16),
        ],
        "categories": categories,
    }


def save_coco_mask(path: Path, mask: np.ndarray) -> None:
    image = Image.fromarray(mask)
    image.putpalette([0, 0, 0] * 256)
    image.save(path)


def make_coco(root: Path, splits: tuple[str, ...] = ("val",)) -> Path:
    """A COCO-layout folder (same 3 images per split); image 9's json size is wrong on purpose."""
    (root / "annotations").mkdir(parents=True)
    for split in splits:
        (root / f"{split}2014").mkdir()
        annotations = json.dumps(coco_instances(split))
        (root / "annotations" / f"instances_{split}2014.json").write_text(annotations)
        for image_id, (width, height) in (
            (42, (WIDTH, HEIGHT)),
            (73, (WIDTH, HEIGHT)),
            (9, (20, 10)),
        ):
            save_jpeg(root / f"{split}2014" / f"{coco_key(image_id, split)}.jpg", width, height)
    return root


def make_toy_index(root: Path, num_train: int = 8, num_val: int = 4, image_size: int = 48):
    """A small image index of toy-world scenes written as PNG files under ``root``."""
    import pandas as pd

    from semples.data.index import IndexRecord, records_to_frame
    from semples.data.toy_world import TOY_CLASSES, ToyWorldConfig, render_scene, scene_id

    config = ToyWorldConfig(image_size=image_size, num_train=num_train, num_val=num_val)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for split, count in (("train", num_train), ("val", num_val)):
        for index in range(count):
            scene = render_scene(config, split, index)
            item = scene_id(split, index)
            image_path, mask_path = root / f"{item}.png", root / f"{item}_mask.png"
            context_path = root / f"{item}_context.png"
            Image.fromarray(scene.image).save(image_path)
            Image.fromarray(scene.mask, mode="L").save(mask_path)
            Image.fromarray(scene.context, mode="L").save(context_path)
            records.append(IndexRecord(item, split, str(image_path), str(mask_path),
                                       image_size, image_size, scene.labels,
                                       str(context_path)))  # fmt: skip
    frame: pd.DataFrame = records_to_frame(records, TOY_CLASSES)
    return frame


# --- (image, label map) pairs for the segmentation tests: a coloured square of one class ------
PAIR_CLASSES = ["background", "red", "blue"]
PAIR_COLOURS = {1: (200, 30, 30), 2: (30, 30, 200)}


def make_pairs(folder: Path, count: int = 6, size: int = 32) -> list[tuple[str, str]]:
    """``count`` images (alternately red and blue squares on grey) and their label maps."""
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        label = 1 + index % 2
        image = np.full((size, size, 3), 120, np.uint8)
        mask = np.zeros((size, size), np.uint8)
        top, left = rng.integers(0, size // 2, size=2)
        image[top : top + size // 2, left : left + size // 2] = PAIR_COLOURS[label]
        mask[top : top + size // 2, left : left + size // 2] = label
        image_path, mask_path = folder / f"img{index}.png", folder / f"img{index}_mask.png"
        Image.fromarray(image).save(image_path)
        Image.fromarray(mask, mode="L").save(mask_path)
        pairs.append((str(image_path), str(mask_path)))
    return pairs
