"""Class lists. Mask value k (1..K) is class ``names[k - 1]``; 0 is background, 255 ignore."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

BACKGROUND = 0
IGNORE_INDEX = 255

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def indefinite_article(name: str) -> str:
    """'an' before a vowel letter, else 'a' (enough for class names; not English phonology)."""
    return "an" if name[:1].lower() in "aeiou" else "a"


def multi_hot(class_indices: Iterable[int], num_classes: int) -> list[int]:
    """Multi-hot vector over the K foreground classes from 0-based class indices."""
    vector = [0] * num_classes
    for index in class_indices:
        if not 0 <= index < num_classes:
            raise ValueError(f"class index {index} outside 0..{num_classes - 1}")
        vector[index] = 1
    return vector


def classes_in_mask(mask: np.ndarray, num_classes: int) -> list[int]:
    """0-based foreground class indices present in a label mask (0 and 255 excluded)."""
    values = np.unique(mask)
    return [int(v) - 1 for v in values if 1 <= v <= num_classes]


def label_names(class_indices: Iterable[int], names: Sequence[str]) -> list[str]:
    return [names[i] for i in class_indices]
