"""Checks shared by the dataset readers: decode an image, read a label mask, compare sizes.

Each check raises :class:`~semples.data.index.BadItemError` naming the file and what is wrong,
so a reader can hand it to an :class:`~semples.data.index.ItemPolicy` (stop, or skip and count)
and the user sees which file to fix. :func:`collect_records` is that loop, shared by readers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from semples.data.classes import IGNORE_INDEX
from semples.data.index import BadItemError, IndexRecord, ItemPolicy
from semples.progress import progress_bar

MASK_MODES = ("P", "L")
_MAX_LISTED_VALUES = 5
# What PIL raises on a corrupt file: OSError (truncated data, unidentified format), SyntaxError
# and ValueError (malformed headers in some plugins), DecompressionBombError (absurd sizes).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

Key = TypeVar("Key")


def absolute_posix(path: str | Path) -> str:
    """The form paths take in the index: absolute, symlinks resolved, forward slashes."""
    return Path(path).resolve().as_posix()


def read_image_size(
    path: str | Path, *, decode: bool = True, item_id: str | None = None
) -> tuple[int, int]:
    """(width, height) of an image; decodes every pixel unless ``decode`` is False, because a
    truncated or corrupt file often has a valid header and only fails on decoding."""
    if not Path(path).is_file():
        raise BadItemError(path, "image file not found", item_id)
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            return image.size
    except _DECODE_ERRORS as err:
        raise BadItemError(path, f"cannot read image: {err}", item_id) from err


def read_label_mask(
    path: str | Path, num_classes: int, *, item_id: str | None = None
) -> np.ndarray:
    """H x W uint8 label indices of a palette or grayscale PNG, with every value checked to be
    a class (0..num_classes) or ignore (255). A palette image is never converted to RGB: its
    raw indices are the labels."""
    if not Path(path).is_file():
        raise BadItemError(path, "mask file not found", item_id)
    try:
        with Image.open(path) as image:
            if image.mode not in MASK_MODES:
                raise BadItemError(
                    path,
                    f"mask has mode {image.mode!r}; expected a single-channel label map "
                    f"(PIL mode 'P' or 'L')",
                    item_id,
                )
            image.load()
            mask = np.array(image, dtype=np.uint8)
    except BadItemError:
        raise
    except _DECODE_ERRORS as err:
        raise BadItemError(path, f"cannot read mask: {err}", item_id) from err
    _check_mask_values(path, mask, num_classes, item_id)
    return mask


def _check_mask_values(
    path: str | Path, mask: np.ndarray, num_classes: int, item_id: str | None
) -> None:
    """A value outside the class list means the mask belongs to another dataset or is broken."""
    values = np.unique(mask)
    bad = [int(v) for v in values if v > num_classes and v != IGNORE_INDEX]
    if not bad:
        return
    listed = ", ".join(str(v) for v in bad[:_MAX_LISTED_VALUES])
    if len(bad) > _MAX_LISTED_VALUES:
        listed += f" (+{len(bad) - _MAX_LISTED_VALUES} more)"
    raise BadItemError(
        path,
        f"mask has values outside 0..{num_classes} and {IGNORE_INDEX}: {listed}",
        item_id,
    )


def check_sizes_match(
    image_path: str | Path,
    image_size: tuple[int, int],
    mask_path: str | Path,
    mask: np.ndarray,
    *,
    item_id: str | None = None,
) -> None:
    """A mask must cover its image pixel for pixel; sizes are reported as width x height."""
    mask_height, mask_width = mask.shape[:2]
    image_width, image_height = image_size
    if (mask_width, mask_height) != (image_width, image_height):
        raise BadItemError(
            mask_path,
            f"mask {mask_width}x{mask_height} does not match image "
            f"{image_width}x{image_height} ({Path(image_path).as_posix()})",
            item_id,
        )


def collect_records(
    items: Sequence[tuple[str, Key]],
    build: Callable[[str, Key], IndexRecord],
    policy: ItemPolicy,
    desc: str,
) -> list[IndexRecord]:
    """Build a record per (split, key); a bad item goes to ``policy``, which either stops the
    scan or skips and counts it, so one broken file does not silently vanish."""
    records: list[IndexRecord] = []
    for split, key in progress_bar(items, total=len(items), desc=desc, unit="img"):
        try:
            records.append(build(split, key))
        except BadItemError as err:
            policy.handle(err, split)
    return records
