"""Class activation maps of the mask generator and their evaluation against ground truth.

Inference follows IRN/CLIMS: the generator runs on several rescaled copies of the image and
their horizontal flips, the ReLU'd per-class maps are resized back and summed, and each kept
class is max-normalised, both at stride 4 (what IRN's affinity step consumes) and at full
resolution (what is scored and what the CRF consumes). Evaluation streams the CAM set through a
:class:`~semples.metrics.ThresholdSweep` of the constant background score; a generator can also
be scored directly, its CAMs computed in memory (each training stage's, without a mask set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semples.data.images import read_rgb, to_tensor
from semples.data.validation import read_label_mask
from semples.metrics import SegmentationScores, ThresholdSweep
from semples.progress import progress_bar

DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
_NORMALISE_EPS = 1e-5
_CAM_STRIDE = 4

State = TypeVar("State")


def _resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of an N x C x h x w batch (a no-op when the size already matches)."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _scale_cams(
    generator: nn.Module, image: Tensor, channels: Tensor, scale: float, flip: bool
) -> Tensor:
    """ReLU'd maps of the kept channels at one scale, flips summed: 1 x C x h x w.

    The image and its flip go through the generator as one batch of 2.
    """
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    batch = _resize(image[None], size)
    if flip:
        batch = torch.cat([batch, batch.flip(-1)])
    maps = F.relu(generator(batch)[:, channels].float())
    if flip:
        maps = maps[:1] + maps[1:].flip(-1)
    return maps


def _max_normalise(cams: Tensor) -> np.ndarray:
    """Each channel divided by its maximum (+eps, so an all-zero map stays zero), as float32."""
    peak = cams.amax(dim=(-2, -1), keepdim=True)
    return (cams / (peak + _NORMALISE_EPS)).cpu().numpy().astype(np.float32)


def _check_image(image: Tensor) -> None:
    if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(
            f"image must be a float 3 x H x W tensor, got {image.dtype} {tuple(image.shape)}"
        )


def _check_class_indices(class_indices: Sequence[int], num_classes: int) -> None:
    bad = [k for k in class_indices if not 0 <= k < num_classes]
    if bad:
        raise ValueError(f"class indices outside [0, {num_classes}): {bad}")
    if len(set(class_indices)) != len(class_indices):
        raise ValueError(f"class indices repeat: {list(class_indices)}")


def multiscale_cams(
    generator: nn.Module,
    image: Tensor,
    class_indices: Sequence[int],
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
) -> dict[str, np.ndarray]:
    """Multi-scale (+ flip) CAMs of the classes present in one image (0-based indices).

    Returns ``keys`` (label values, index + 1), ``cam`` (C x H x W) and ``cam_stride4``
    (C x ceil(H/4) x ceil(W/4)), both float32 and max-normalised per channel. Only the listed
    classes are kept, as in IRN/CLIMS, which score CAMs with the image-level labels known.
    The generator runs in eval mode and gets its previous mode back.
    """
    _check_image(image)
    if not scales:
        raise ValueError("scales must not be empty")
    _check_class_indices(class_indices, generator.num_classes)
    height, width = image.shape[-2:]
    full_size = (height, width)
    stride_size = (math.ceil(height / _CAM_STRIDE), math.ceil(width / _CAM_STRIDE))
    keys = np.asarray(class_indices, dtype=np.int64) + 1
    if not class_indices:
        return {
            "keys": keys,
            "cam": np.zeros((0, *full_size), dtype=np.float32),
            "cam_stride4": np.zeros((0, *stride_size), dtype=np.float32),
        }
    channels = torch.as_tensor(list(class_indices), device=image.device)
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            cam = torch.zeros(1, len(channels), *full_size, device=image.device)
            cam_stride4 = torch.zeros(1, len(channels), *stride_size, device=image.device)
            for scale in scales:
                maps = _scale_cams(generator, image, channels, scale, flip)
                cam += _resize(maps, full_size)
                cam_stride4 += _resize(maps, stride_size)
    finally:
        generator.train(was_training)
    return {
        "keys": keys,
        "cam": _max_normalise(cam[0]),
        "cam_stride4": _max_normalise(cam_stride4[0]),
    }


def cam_records(
    generator: nn.Module,
    image_loader: Callable[[], np.ndarray],
    labels: Sequence[int],
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """CAMs of one image loaded as uint8 H x W x 3, so a pipeline can hand out one callable
    per image and the mask-set dataset computes and writes them one at a time."""
    array = image_loader()
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be uint8 H x W x 3, got {array.dtype} {array.shape}")
    return multiscale_cams(generator, to_tensor(array).to(device), labels, scales, flip)


def _add_image(
    sweep: ThresholdSweep,
    image_id: str,
    cams: np.ndarray,
    keys: np.ndarray,
    gt: np.ndarray,
    context: np.ndarray | None = None,
) -> None:
    """``sweep.add`` with the image id in its error (a bad shape names both sizes there)."""
    try:
        sweep.add(cams, keys.tolist(), gt, context)
    except ValueError as error:
        raise ValueError(f"CAM {image_id!r}: {error}") from error


def _context_map(
    context_maps: Mapping[str, Callable[[], np.ndarray]] | None, image_id: str
) -> np.ndarray | None:
    if context_maps is None:
        return None
    if image_id not in context_maps:
        raise KeyError(f"no context map for CAM {image_id!r}")
    return context_maps[image_id]()


def _miou(scores: SegmentationScores, names: Sequence[str]) -> float | None:
    return scores.to_dict(names)["miou"]


def evaluate_cams(
    cams: Mapping[str, Callable[[], dict]],
    gt_masks: Mapping[str, Callable[[], np.ndarray]],
    class_names: Sequence[str],
    thresholds: Sequence[float],
    context_maps: Mapping[str, Callable[[], np.ndarray]] | None = None,
) -> dict:
    """CAM mIoU over a split for every background threshold, best threshold's scores in full.

    Also scores the trivial baseline (every labelled class marked over the whole image, so
    all pixels take the first listed class): the floor that image-level labels alone reach,
    against which the CAMs' localisation is judged. Reported at the CAMs' best threshold; below
    1 it does not depend on it. With ``context_maps`` (the toy world's), ``context_leak`` is the
    :class:`~semples.metrics.ContextLeak` of the labelling at the best threshold, else None.
    Raises KeyError for a CAM without ground truth or context map.
    """
    if not cams:
        raise ValueError("no CAMs to evaluate")
    names = ["background", *class_names]
    sweep = ThresholdSweep(thresholds, num_classes=len(names))
    trivial = ThresholdSweep(thresholds, num_classes=len(names))
    for image_id, load_cam in progress_bar(cams.items(), total=len(cams), desc="scoring CAMs",
                                           unit="img", leave=False):  # fmt: skip
        if image_id not in gt_masks:
            raise KeyError(f"no ground-truth mask for CAM {image_id!r}")
        record, gt = load_cam(), gt_masks[image_id]()
        keys = np.asarray(record["keys"])
        context = _context_map(context_maps, image_id)
        _add_image(sweep, image_id, record["cam"], keys, gt, context)
        _add_image(trivial, image_id, np.ones_like(record["cam"]), keys, gt)
    results = sweep.results()
    best_threshold, best_scores = sweep.best()
    best_index = sweep.thresholds.index(best_threshold)
    leak = sweep.context_leak(best_threshold)
    return {
        **best_scores.to_dict(names),
        "best_threshold": best_threshold,
        "sweep": [{"threshold": t, "miou": _miou(scores, names)} for t, scores in results],
        "trivial_miou": _miou(trivial.results()[best_index][1], names),
        "context_leak": None if leak is None else leak.to_dict(names),
        "num_images": len(cams),
    }


def evaluate_generator(
    generator: nn.Module,
    rows: pd.DataFrame,
    gt_masks: Mapping[str, Callable[[], np.ndarray]],
    class_names: Sequence[str],
    thresholds: Sequence[float],
    scales: Sequence[float] = (1.0,),
    flip: bool = True,
    device: str | torch.device = "cpu",
    context_maps: Mapping[str, Callable[[], np.ndarray]] | None = None,
) -> dict:
    """:func:`evaluate_cams` of a generator's CAMs of ``rows``, computed in memory one image at a
    time and never saved, so every training stage can be scored without a mask set of its own.
    The report leaves out the sweep and says at which ``scales`` (and ``flip``) it was scored."""
    jobs = cam_jobs(generator, rows, scales, flip, device)
    report = evaluate_cams(jobs, gt_masks, class_names, thresholds, context_maps)
    del report["sweep"]
    return {**report, "scales": [float(s) for s in scales], "flip": bool(flip)}


def evaluate_stages(
    states: Mapping[str, State],
    skipped: Mapping[str, str],
    evaluate: Callable[[str, State], dict],
) -> dict[str, dict]:
    """``evaluate(name, state)`` of each stage, in order, marked ``skipped`` (False) and
    ``skip_reason`` (None).

    A skipped stage passed its input on unchanged, so it repeats the previous stage's report,
    marked as skipped with the reason, and nothing is computed again.
    """
    reports: dict[str, dict] = {}
    for position, (name, state) in enumerate(states.items()):
        if name not in skipped:
            reports[name] = {**evaluate(name, state), "skipped": False, "skip_reason": None}
        elif position == 0:
            raise ValueError(f"the first stage {name!r} has no input to pass on, so cannot skip")
        else:
            previous = reports[list(states)[position - 1]]
            reports[name] = {**previous, "skipped": True, "skip_reason": skipped[name]}
    return reports


def labelled_rows(image_index: pd.DataFrame, splits: Sequence[str]) -> pd.DataFrame:
    """Index rows of ``splits``, one per image (an image in two splits is inferred once)."""
    rows = image_index[image_index["split"].isin(list(splits))].drop_duplicates("id")
    if rows.empty:
        raise ValueError(f"no image in split(s) {list(splits)} of the image index")
    return rows


def cam_jobs(
    generator: nn.Module,
    rows: pd.DataFrame,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Callable[[], dict[str, np.ndarray]]]:
    """id -> callable computing that image's CAMs, so a mask set writes them one at a time."""
    return {
        row.id: partial(
            cam_records,
            generator,
            partial(read_rgb, row.image_path),
            [k for k, present in enumerate(row.labels) if present],
            scales,
            flip,
            device,
        )  # fmt: skip
        for row in rows.itertuples(index=False)
    }


def gt_mask_loaders(rows: pd.DataFrame, num_classes: int) -> dict[str, Callable[[], np.ndarray]]:
    """id -> callable reading (and checking) that image's ground-truth label mask."""
    return {
        row.id: partial(read_label_mask, row.mask_path, num_classes, item_id=row.id)
        for row in rows.itertuples(index=False)
    }


def context_map_loaders(
    rows: pd.DataFrame, num_classes: int
) -> dict[str, Callable[[], np.ndarray]] | None:
    """id -> callable reading that image's context map (the toy world's); None when the index
    has none (VOC, COCO, or an index written before context maps existed)."""
    if "context_path" not in rows.columns or rows["context_path"].isna().all():
        return None
    missing = rows.loc[rows["context_path"].isna(), "id"].tolist()
    if missing:
        raise ValueError(f"{len(missing)} image index rows have no context_path: {missing[:5]}")
    return {
        row.id: partial(read_label_mask, row.context_path, num_classes, item_id=row.id)
        for row in rows.itertuples(index=False)
    }
