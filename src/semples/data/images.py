"""Images with their image-level labels, as tensors for training the mask generator.

Augmentation randomness is drawn from a generator seeded by (seed, epoch, item), so an item
looks the same whichever process, worker or resumed run loads it: this is what makes an
interrupted training resume to the same result as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset


@dataclass(frozen=True)
class Augmentation:
    """CLIMS-style: random resize of the long side, horizontal flip, random crop (zero pad)."""

    resize_long: tuple[int, int] | None = None
    hflip: bool = True
    crop_size: int | None = None

    def __post_init__(self) -> None:
        if self.resize_long is not None and not 0 < self.resize_long[0] <= self.resize_long[1]:
            raise ValueError(f"resize_long must be (low, high) with 0 < low <= high, got "
                             f"{self.resize_long}")  # fmt: skip
        if self.crop_size is not None and self.crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {self.crop_size}")


def read_rgb(path: str) -> np.ndarray:
    """H x W x 3 uint8; the error names the file (the index was validated, files may change)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err


def augment(image: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    if augmentation.resize_long is not None:
        low, high = augmentation.resize_long
        long_side = int(rng.integers(low, high + 1))
        height, width = image.shape[:2]
        scale = long_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    if augmentation.hflip and rng.random() < 0.5:
        image = image[:, ::-1]
    if augmentation.crop_size is not None:
        image = random_crop(image, augmentation.crop_size, rng)
    return np.ascontiguousarray(image)


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size window, zero-padded where the image is smaller."""
    height, width = image.shape[:2]
    top = int(rng.integers(0, max(height - size, 0) + 1))
    left = int(rng.integers(0, max(width - size, 0) + 1))
    window = image[top : top + size, left : left + size]
    out = np.zeros((size, size, 3), dtype=image.dtype)
    out[: window.shape[0], : window.shape[1]] = window
    return out


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 -> float 3 x H x W in [0, 1] (every model normalises its own input)."""
    return torch.tensor(image).permute(2, 0, 1).float().div_(255.0)


class LabelledImages(Dataset):
    """The images of one split of the image index with multi-hot labels.

    Items are ``(image [3,H,W] in [0,1], labels [K] float, position)``. Images without any
    label are left out: SemPLES learns from (image, class) pairs and they have none.
    """

    def __init__(
        self,
        index: pd.DataFrame,
        splits: str | Sequence[str],
        augmentation: Augmentation = Augmentation(),
        seed: int = 0,
    ):
        splits = [splits] if isinstance(splits, str) else list(splits)
        rows = index[index["split"].isin(splits)]
        rows = rows[[sum(labels) > 0 for labels in rows["labels"]]]
        if rows.empty:
            raise ValueError(f"no labelled image in split(s) {splits} of the image index")
        self.ids = rows["id"].tolist()
        self.paths = rows["image_path"].tolist()
        self.labels = torch.tensor(np.stack(rows["labels"].to_list()), dtype=torch.float32)
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, self.epoch, position])
        image = augment(read_rgb(self.paths[position]), self.augmentation, rng)
        return to_tensor(image), self.labels[position], position
