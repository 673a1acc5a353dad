"""PASCAL VOC 2012 (with the SBD ``SegmentationClassAug`` masks) as index records.

Layout under ``root``::

    JPEGImages/<id>.jpg
    SegmentationClassAug/<id>.png, SegmentationClass/<id>.png   (first folder holding it wins)
    ImageSets/Segmentation/<split>.txt                           (one id per line)
    Annotations/<id>.xml                                         (optional: image-level labels)

A wrong root, a missing split file or no mask folder at all is a setup error and raises at once;
a problem with one image is a :class:`BadItemError` handed to the :class:`ItemPolicy`.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from semples.data.classes import VOC_CLASSES, classes_in_mask
from semples.data.index import BadItemError, IndexRecord, ItemPolicy
from semples.data.validation import (
    absolute_posix,
    check_sizes_match,
    collect_records,
    read_image_size,
    read_label_mask,
)

logger = logging.getLogger(__name__)

DEFAULT_SPLITS = ("train_aug", "train", "val")
DEFAULT_MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")
_CLASS_INDEX = {name: index for index, name in enumerate(VOC_CLASSES)}


class _Item(NamedTuple):
    """What one image yields independent of its split, cached so that an image listed in
    several splits (train is a subset of train_aug) is decoded once."""

    width: int
    height: int
    mask_path: str
    labels: tuple[int, ...]


class _VocLayout:
    """The checked folders of one VOC root, and the per-image work on them."""

    def __init__(self, root: Path, mask_dirs: Sequence[str]):
        self.root = root
        self.image_dir = root / "JPEGImages"
        self.split_dir = root / "ImageSets" / "Segmentation"
        self.annotation_dir = root / "Annotations"
        self.mask_dirs = [root / name for name in mask_dirs if (root / name).is_dir()]
        self._cache: dict[str, _Item | BadItemError] = {}

    def split_file(self, split: str) -> Path:
        return self.split_dir / f"{split}.txt"

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / f"{image_id}.jpg"

    def record(self, split: str, image_id: str) -> IndexRecord:
        """The record of ``image_id`` in ``split``; raises BadItemError if the image is bad."""
        image_path = self.image_path(image_id)
        if not image_path.is_file():
            raise BadItemError(
                image_path,
                f"image for id {image_id!r} listed in {self.split_file(split)} not found",
                image_id,
            )
        item = self._item(image_id)
        return IndexRecord(
            id=image_id,
            split=split,
            image_path=absolute_posix(image_path),
            mask_path=item.mask_path,
            width=item.width,
            height=item.height,
            labels=item.labels,
        )

    def _item(self, image_id: str) -> _Item:
        """Decoded facts about ``image_id``; a failure is cached too, and raised again."""
        if image_id not in self._cache:
            try:
                self._cache[image_id] = self._decode(image_id)
            except BadItemError as err:
                self._cache[image_id] = err
        cached = self._cache[image_id]
        if isinstance(cached, BadItemError):
            raise cached
        return cached

    def _decode(self, image_id: str) -> _Item:
        image_path = self.image_path(image_id)
        mask_path = self._mask_path(image_id)
        size = read_image_size(image_path, item_id=image_id)
        mask = read_label_mask(mask_path, len(VOC_CLASSES), item_id=image_id)
        check_sizes_match(image_path, size, mask_path, mask, item_id=image_id)
        if self.annotation_dir.is_dir():
            labels = _labels_from_xml(self.annotation_dir / f"{image_id}.xml", image_id)
        else:
            labels = classes_in_mask(mask, len(VOC_CLASSES))
        return _Item(size[0], size[1], absolute_posix(mask_path), tuple(sorted(set(labels))))

    def _mask_path(self, image_id: str) -> Path:
        candidates = [mask_dir / f"{image_id}.png" for mask_dir in self.mask_dirs]
        for path in candidates:
            if path.is_file():
                return path
        tried = ", ".join(path.as_posix() for path in candidates)
        raise BadItemError(candidates[0], f"no mask for id {image_id!r} (tried {tried})", image_id)


def scan_voc(
    root: str | Path,
    splits: Sequence[str] = DEFAULT_SPLITS,
    mask_dirs: Sequence[str] = DEFAULT_MASK_DIRS,
    policy: ItemPolicy | None = None,
) -> list[IndexRecord]:
    """One record per (split, id) listed in the split files, every image and mask checked.

    The same image in two splits gives two records (different ``split``) but is decoded once.
    Labels come from ``Annotations/<id>.xml`` when that folder exists, else from the mask.
    """
    policy = policy or ItemPolicy()
    layout = _check_layout(Path(root), mask_dirs)
    items = [
        (split, image_id)
        for split in splits
        for image_id in _read_split(layout.split_file(split), split)
    ]
    return collect_records(items, layout.record, policy, desc="VOC")


def _check_layout(root: Path, mask_dirs: Sequence[str]) -> _VocLayout:
    """Setup errors are raised, never skipped: no item of a misconfigured root is usable."""
    if not root.exists():
        raise FileNotFoundError(f"VOC root not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"VOC root is not a directory: {root}")
    layout = _VocLayout(root, mask_dirs)
    if not layout.image_dir.is_dir():
        raise FileNotFoundError(f"VOC image folder not found: {layout.image_dir}")
    if not layout.mask_dirs:
        raise FileNotFoundError(
            f"no VOC mask folder under {root}: expected one of {', '.join(mask_dirs)}"
        )
    return layout


def _read_split(split_file: Path, split: str) -> list[str]:
    """Ids of one split file, blank lines and surrounding spaces ignored, duplicates dropped
    (a repeated id would otherwise give two identical records)."""
    if not split_file.is_file():
        raise FileNotFoundError(f"split {split!r}: split file not found: {split_file}")
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        logger.warning("%s lists %d ids more than once", split_file, len(ids) - len(unique))
    return unique


def _labels_from_xml(xml_path: Path, image_id: str) -> list[int]:
    """Classes of every ``<object><name>`` (difficult and truncated objects included)."""
    if not xml_path.is_file():
        raise BadItemError(xml_path, "annotation file not found", image_id)
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as err:
        raise BadItemError(xml_path, f"cannot parse annotation xml: {err}", image_id) from err
    labels = []
    for obj in tree.getroot().findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in _CLASS_INDEX:
            raise BadItemError(xml_path, f"unknown class name {name!r} in <object>", image_id)
        labels.append(_CLASS_INDEX[name])
    return labels
