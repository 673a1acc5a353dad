"""MS COCO 2014 instance annotations as semantic label maps and index records.

Layout under ``root``::

    <split>2014/COCO_<split>2014_<12-digit id>.jpg
    annotations/instances_<split>2014.json

Category ids, sorted ascending, become classes 1..K (K = 80 for COCO); the index and the mask
set key an image by its file stem (``image_key``). Masks are rendered from the json (small
instances painted over large ones, crowd regions ignored where no instance is) and written one
at a time; :func:`scan_coco` then checks every image against the json and its written mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from semples.data.classes import BACKGROUND, IGNORE_INDEX
from semples.data.index import BadItemError, IndexRecord, ItemPolicy
from semples.data.validation import (
    absolute_posix,
    check_sizes_match,
    collect_records,
    read_image_size,
    read_label_mask,
)

_MIN_POLYGON_COORDS = 6  # pycocotools reads a 4-number "polygon" as a box; fewer is no area


class CocoSplit:
    """One split's instances json, indexed by image id. Build it with :meth:`load`."""

    def __init__(self, split: str, image_dir: Path, annotation_file: Path, data: Mapping[str, Any]):
        self.split = split
        self.image_dir = image_dir
        self.annotation_file = annotation_file
        categories = sorted(data["categories"], key=lambda category: category["id"])
        self._class_names = tuple(category["name"] for category in categories)
        self._class_value = {c["id"]: value for value, c in enumerate(categories, start=1)}
        self._images = {image["id"]: image for image in data["images"]}
        self._annotations: dict[int, list[dict[str, Any]]] = {i: [] for i in self._images}
        for annotation in data["annotations"]:
            self._check_annotation(annotation)
            self._annotations[annotation["image_id"]].append(annotation)

    @classmethod
    def load(cls, root: str | Path, split: str) -> CocoSplit:
        """Read ``root/annotations/instances_<split>2014.json``; missing or broken files raise
        at once, since no image of the split can be indexed without them."""
        root = Path(root)
        annotation_file = root / "annotations" / f"instances_{split}2014.json"
        image_dir = root / f"{split}2014"
        if not annotation_file.is_file():
            raise FileNotFoundError(f"COCO {split} annotations not found: {annotation_file}")
        if not image_dir.is_dir():
            raise FileNotFoundError(f"COCO {split} image folder not found: {image_dir}")
        try:
            with annotation_file.open("rb") as file:
                data = json.load(file)
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"cannot parse COCO annotations {annotation_file}: {err}") from err
        missing = [key for key in ("images", "annotations", "categories") if key not in data]
        if missing:
            listed = ", ".join(missing)
            raise ValueError(f"{annotation_file} is not a COCO instances file: missing {listed}")
        return cls(split, image_dir, annotation_file, data)

    def _check_annotation(self, annotation: Mapping[str, Any]) -> None:
        """An annotation pointing at an unknown image or category means a broken json."""
        if annotation["image_id"] not in self._images:
            raise ValueError(
                f"{self.annotation_file}: annotation {annotation['id']} refers to unknown "
                f"image id {annotation['image_id']}"
            )
        if annotation["category_id"] not in self._class_value:
            raise ValueError(
                f"{self.annotation_file}: annotation {annotation['id']} refers to unknown "
                f"category id {annotation['category_id']}"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Category names in ascending category-id order: name k-1 is mask value k."""
        return self._class_names

    def image_ids(self) -> list[int]:
        return sorted(self._images)

    def image_key(self, image_id: int) -> str:
        """The file stem, e.g. ``COCO_val2014_000000000042``: the id in the index and mask set."""
        return Path(self._images[image_id]["file_name"]).stem

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self._images[image_id]["file_name"]

    def size(self, image_id: int) -> tuple[int, int]:
        """(width, height) as the json states it."""
        image = self._images[image_id]
        return int(image["width"]), int(image["height"])

    def labels(self, image_id: int) -> tuple[int, ...]:
        """0-based classes of the non-crowd instances (a crowd-only class is not a label)."""
        values = {
            self._class_value[a["category_id"]]
            for a in self._annotations[image_id]
            if not a.get("iscrowd")
        }
        return tuple(sorted(value - 1 for value in values))

    def render_mask(self, image_id: int) -> np.ndarray:
        """H x W uint8 label map: instances in descending area order so small objects stay on
        top of the large ones they overlap, then crowd regions set to 255 on background only."""
        width, height = self.size(image_id)
        mask = np.full((height, width), BACKGROUND, dtype=np.uint8)
        annotations = self._annotations[image_id]
        instances = [a for a in annotations if not a.get("iscrowd")]
        for annotation in sorted(instances, key=lambda a: a["area"], reverse=True):
            region = self._region(image_id, annotation)
            mask[region] = self._class_value[annotation["category_id"]]
        crowd = np.zeros_like(mask, dtype=bool)
        for annotation in annotations:
            if annotation.get("iscrowd"):
                crowd |= self._region(image_id, annotation)
        mask[crowd & (mask == BACKGROUND)] = IGNORE_INDEX
        return mask

    def _region(self, image_id: int, annotation: Mapping[str, Any]) -> np.ndarray:
        """Boolean pixels of one annotation; a malformed segmentation is a bad item."""
        width, height = self.size(image_id)
        item_id = self.image_key(image_id)
        try:
            region = _decode_segmentation(annotation["segmentation"], height, width)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise BadItemError(
                self.annotation_file,
                f"annotation {annotation['id']} of {item_id}: cannot decode segmentation: {err}",
                item_id,
            ) from err
        if region.shape != (height, width):
            raise BadItemError(
                self.annotation_file,
                f"annotation {annotation['id']} of {item_id}: segmentation is "
                f"{region.shape[1]}x{region.shape[0]} but the image is {width}x{height}",
                item_id,
            )
        return region


def _decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Polygons, uncompressed RLE or compressed RLE -> boolean H x W mask (pycocotools)."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= _MIN_POLYGON_COORDS]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def coco_mask_renderers(splits: Sequence[CocoSplit]) -> dict[str, Callable[[], np.ndarray]]:
    """image_key -> a callable rendering that mask, so masks are written one at a time and
    never all held in memory."""
    return {
        split.image_key(image_id): partial(split.render_mask, image_id)
        for split in splits
        for image_id in split.image_ids()
    }


def scan_coco(
    splits: Sequence[CocoSplit],
    mask_paths: Mapping[str, str | Path],
    policy: ItemPolicy | None = None,
    *,
    decode_images: bool = True,
) -> list[IndexRecord]:
    """One record per image, checked against its json size and its written mask.

    ``decode_images=False`` reads only image headers (much faster on 120k images, but misses
    truncated files); masks are always decoded, their values being checked against the classes.
    """
    policy = policy or ItemPolicy()
    items = [(split.split, (split, image_id)) for split in splits for image_id in split.image_ids()]
    build = partial(_record, mask_paths=mask_paths, decode_images=decode_images)
    return collect_records(items, build, policy, desc="COCO")


def _record(
    split_name: str,
    key: tuple[CocoSplit, int],
    *,
    mask_paths: Mapping[str, str | Path],
    decode_images: bool,
) -> IndexRecord:
    coco, image_id = key
    item_id = coco.image_key(image_id)
    image_path = coco.image_path(image_id)
    size = read_image_size(image_path, decode=decode_images, item_id=item_id)
    expected_width, expected_height = coco.size(image_id)
    if size != (expected_width, expected_height):
        raise BadItemError(
            image_path,
            f"image is {size[0]}x{size[1]} but {coco.annotation_file} says "
            f"{expected_width}x{expected_height}",
            item_id,
        )
    if item_id not in mask_paths:
        raise BadItemError(image_path, f"no mask path given for {item_id!r}", item_id)
    mask_path = mask_paths[item_id]
    mask = read_label_mask(mask_path, len(coco.class_names), item_id=item_id)
    check_sizes_match(image_path, size, mask_path, mask, item_id=item_id)
    return IndexRecord(
        id=item_id,
        split=split_name,
        image_path=absolute_posix(image_path),
        mask_path=absolute_posix(mask_path),
        width=size[0],
        height=size[1],
        labels=coco.labels(image_id),
    )
