"""Training IRNet on IR labels, as IRN's ``train_irn`` step.

IRN's recipe: SGD with weight decay, poly learning-rate decay (power 0.9) and 10x the learning
rate on the displacement branch, random crops and flips of image and IR label together. Crop
and flip are drawn from a generator seeded by (seed, epoch, index), and order, checkpoint and
resume are the shared engine's (:mod:`semples.training.engine`), so a run resumed from its
per-epoch checkpoint ends exactly where the uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from semples.data.classes import IGNORE_INDEX
from semples.data.images import to_tensor
from semples.refine.irnet import OUTPUT_STRIDE, STRIDES, IRNet, irnet_loss
from semples.training import engine
from semples.training.config import check_budget

DISPLACEMENT_LR_MULTIPLIER = 10  # IRN's learning rate of the displacement branch, relative
POLY_POWER = 0.9
_TERMS = ("pos_aff", "neg_aff", "dp_fg", "dp_bg", "total")


def _window(size: int, crop: int, rng: np.random.Generator) -> tuple[slice, slice]:
    """(source, destination) slices of one axis: a random window of a side longer than the
    crop, or the whole side at a random place in the crop (IRN's random crop)."""
    length = min(size, crop)
    offset = int(rng.integers(0, abs(size - crop) + 1))
    if size > crop:
        return slice(offset, offset + length), slice(0, length)
    return slice(0, length), slice(offset, offset + length)


def _check_crop_size(crop_size: int | None) -> None:
    """A crop must hold whole IRNet output cells: None or a positive multiple of its stride."""
    if crop_size is not None and (crop_size < OUTPUT_STRIDE or crop_size % OUTPUT_STRIDE):
        raise ValueError(
            f"crop_size must be None or a positive multiple of {OUTPUT_STRIDE}, got {crop_size}"
        )


class IrLabelDataset(Dataset):
    """Images with their IR labels; items ``(image [3, c, c] in [0, 1], label [c/4, c/4] long,
    index)``.

    ``images`` / ``labels`` load H x W x 3 uint8 images and H x W integer IR labels (255 =
    ignore). Each item is flipped (``hflip``, probability 0.5) and cropped to ``crop_size``
    (padded with 0 / 255 where smaller), then the label is subsampled to IRNet's ``stride`` (4,
    or 2 / 1 with its ``image_scale``) by taking the top-left pixel of every stride x stride
    cell, IRN's nearest-neighbour downscaling. Without
    ``crop_size`` items keep their size (images must then share one size to be batched).
    IRN also rescales images randomly by 0.5-1.5; this dataset does not.
    """

    def __init__(
        self,
        images: Sequence[Callable[[], np.ndarray]],
        labels: Sequence[Callable[[], np.ndarray]],
        crop_size: int | None,
        hflip: bool,
        seed: int,
        stride: int = 4,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        _check_crop_size(crop_size)
        if stride not in STRIDES:
            raise ValueError(f"stride must be one of IRNet's {STRIDES}, got {stride}")
        self.images, self.labels, self.stride = images, labels, stride
        self.crop_size, self.hflip, self.seed = crop_size, hflip, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        image, label = self.images[index](), self.labels[index]()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"item {index}: image must be H x W x 3 uint8, got {image.dtype} "
                             f"{image.shape}")  # fmt: skip
        if label.shape != image.shape[:2] or not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"item {index}: label {label.dtype} {label.shape} must be an integer "
                             f"map of the image's size {image.shape[:2]}")  # fmt: skip
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.hflip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.crop_size is not None:
            (source_rows, rows), (source_cols, cols) = (
                _window(size, self.crop_size, rng) for size in label.shape
            )
            cropped_image = np.zeros((self.crop_size, self.crop_size, 3), np.uint8)
            cropped_label = np.full((self.crop_size, self.crop_size), IGNORE_INDEX, label.dtype)
            cropped_image[rows, cols] = image[source_rows, source_cols]
            cropped_label[rows, cols] = label[source_rows, source_cols]
            image, label = cropped_image, cropped_label
        image = to_tensor(np.ascontiguousarray(image))
        label = torch.from_numpy(np.ascontiguousarray(label[:: self.stride, :: self.stride]))
        label = label.long()
        return image, label, index


@dataclass(frozen=True)
class IrnetConfig:
    """IRN's defaults: 3 epochs of batch 32 at 512 px crops, lr 0.1, weight decay 1e-4,
    affinity pairs within radius 10. ``crop_size`` is the dataset's (checked at training)."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.1
    weight_decay: float = 1e-4
    crop_size: int | None = 512
    radius: int = 10
    seed: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        check_budget(self)
        _check_crop_size(self.crop_size)
        if self.radius < 2:
            raise ValueError(f"radius must be >= 2, got {self.radius}")


def poly_lr(base_lr: float, step: int, total_steps: int) -> float:
    """IRN's poly decay ``base * (1 - step / total) ** 0.9``; a function of the step only."""
    return base_lr * (1 - step / max(total_steps, 1)) ** POLY_POWER


def train_irnet(
    model: IRNet,
    dataset: IrLabelDataset,
    config: IrnetConfig,
    checkpoint_path: Path | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train ``model`` in place on IR labels; return one history row per step (``lr`` is the
    edge side's).

    IRN's optimiser is SGD over the edge side (edge branch, and the trunk when trainable) at
    ``lr`` and the displacement branch at 10 x ``lr``. (IRN's ``PolyOptimizer`` passes the
    weight decay into SGD's momentum slot, so its momentum is 1e-4; here it is 0.) With
    ``checkpoint_path``, the state after every epoch is saved there and an existing checkpoint is
    resumed from (the caller puts the config's fingerprint in the path).
    """
    if dataset.crop_size != config.crop_size:
        raise ValueError(
            f"dataset crop_size {dataset.crop_size} differs from config {config.crop_size}"
        )
    if dataset.stride != model.stride:
        raise ValueError(
            f"the dataset subsamples labels at stride {dataset.stride}, IRNet predicts at "
            f"stride {model.stride} (its image_scale {model.image_scale})"
        )
    device = device or model.pixel_mean.device
    model.to(device).train()
    edge_side, displacement = model.parameter_groups()

    def step(trained: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
        images, labels, _ = batch
        edge_logits, displacement_field = trained(images.to(device))
        losses = irnet_loss(edge_logits, displacement_field, labels.to(device), config.radius)
        return {term: losses[term] for term in _TERMS}

    task = engine.Task(
        name="IRNet",
        module=model,
        optimizer=torch.optim.SGD(
            [{"params": edge_side}, {"params": displacement}],
            lr=config.lr,
            weight_decay=config.weight_decay,
        ),
        step=step,
        lr=partial(poly_lr, config.lr),
        checkpointed={"model": model},
        lr_multipliers=(1, DISPLACEMENT_LR_MULTIPLIER),
    )
    schedule = engine.Schedule(config.epochs, config.batch_size, config.seed, config.max_steps)
    history = engine.fit(task, dataset, schedule, checkpoint_path, progress)
    return history[["epoch", "step", "lr", *_TERMS]]
