"""The image index: one row per (split, image) with paths, size and image-level labels.

Every dataset reader yields :class:`IndexRecord` objects; :func:`records_to_frame` turns them
into the parquet table the pipelines pass around. Readers report a bad item by raising
:class:`BadItemError`; an :class:`ItemPolicy` decides whether that stops the run or skips the
item and counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from semples.data.classes import label_names, multi_hot

logger = logging.getLogger(__name__)

INDEX_COLUMNS = (
    "id", "split", "image_path", "mask_path", "context_path", "width", "height", "labels",
    "label_names",
)  # fmt: skip


@dataclass(frozen=True)
class IndexRecord:
    """One image of one split. ``labels`` are 0-based foreground class indices;
    ``context_path`` is the toy world's context map (evaluation only), None elsewhere."""

    id: str
    split: str
    image_path: str
    mask_path: str | None
    width: int
    height: int
    labels: tuple[int, ...]
    context_path: str | None = None


class BadItemError(ValueError):
    """An item that cannot be used; the message names the file (or id) and what is wrong."""

    def __init__(self, path: str, reason: str, item_id: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.item_id = item_id
        super().__init__(f"{self.path}: {reason}")


@dataclass
class ItemPolicy:
    """What to do with a bad item: ``raise`` (default) stops; ``skip`` warns and counts it."""

    on_bad_item: Literal["raise", "skip"] = "raise"
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_bad_item not in ("raise", "skip"):
            raise ValueError(f"on_bad_item must be 'raise' or 'skip', got {self.on_bad_item!r}")

    def handle(self, error: BadItemError, split: str | None = None) -> None:
        if self.on_bad_item == "raise":
            raise error
        logger.warning("Skipping bad item: %s", error)
        self.skipped.append(
            {
                "id": error.item_id or "",
                "split": split or "",
                "path": error.path,
                "reason": error.reason,
            }
        )


def records_to_frame(records: Iterable[IndexRecord], class_names: Sequence[str]) -> pd.DataFrame:
    """The index table: labels as a multi-hot list over ``class_names`` plus their names."""
    rows = [
        {
            "id": r.id,
            "split": r.split,
            "image_path": r.image_path,
            "mask_path": r.mask_path,
            "context_path": r.context_path,
            "width": int(r.width),
            "height": int(r.height),
            "labels": multi_hot(r.labels, len(class_names)),
            "label_names": label_names(sorted(r.labels), class_names),
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
