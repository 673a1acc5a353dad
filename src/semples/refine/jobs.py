"""Per-image jobs over a CAM set, so a mask-set dataset computes and writes one image at a time.

Each function returns ``id -> callable``; nothing is computed until the mask set saves it, and
memory holds one image's CAMs, labels and edge map at a time whatever the split's size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from semples.checkpoints import scratch_checkpoint
from semples.data.images import read_rgb, to_tensor
from semples.refine.irnet import IRNet, predict_edge
from semples.refine.irnet_training import IrLabelDataset, IrnetConfig, train_irnet
from semples.refine.pseudo_masks import ir_label, propagated_scores, pseudo_mask
from semples.training import distributed
from semples.training.config import with_budget

if TYPE_CHECKING:
    from semples.parameters import Irnet, Train

CamSet = Mapping[str, Callable[[], Mapping[str, np.ndarray]]]


def _rows_with_cams(cams: CamSet, rows: pd.DataFrame) -> pd.DataFrame:
    missing = sorted(set(rows["id"]) - set(cams))
    if missing:
        raise KeyError(f"no CAMs for {len(missing)} image(s), e.g. {missing[:5]}: rerun infer_cams")
    return rows


def _ir_label(image_path: str, load_cam: Callable, settings: Mapping[str, Any]) -> np.ndarray:
    return ir_label(read_rgb(image_path), load_cam(), **settings)


def ir_label_jobs(
    cams: CamSet, rows: pd.DataFrame, thresholds: Mapping[str, float], crf: Mapping[str, Any]
) -> dict[str, Callable[[], np.ndarray]]:
    """IRN's confident-region label of every image of ``rows`` (see :func:`ir_label`)."""
    settings = {**thresholds, "crf": dict(crf)}
    return {
        row.id: partial(_ir_label, row.image_path, cams[row.id], settings)
        for row in _rows_with_cams(cams, rows).itertuples(index=False)
    }


_MODEL_KEYS = {"backbone", "weights", "image_scale"}


def irnet_config(settings: Irnet, seed: int, max_steps: int | None) -> IrnetConfig:
    """The training config of ``pseudo_masks.irnet`` (``max_steps``: the run's step cap)."""
    return with_budget(IrnetConfig(**settings.model_dump(exclude=_MODEL_KEYS)), seed, max_steps)


def fit_irnet(
    ir_labels: Mapping[str, Callable[[], np.ndarray]],
    rows: pd.DataFrame,
    settings: Irnet,
    train: Train,
    seed: int,
    device: torch.device,
) -> tuple[dict, pd.DataFrame]:
    """Train IRNet on the IR labels of ``rows``: its state dict and loss history.

    Seeded by ``seed``, capped by ``train.max_steps``, in ``train.processes`` DDP processes when
    above 1 (the label loaders must then be picklable, as a saved mask set's are); an epoch
    checkpoint in ``train.checkpoint_dir`` (named by a fingerprint of config and images) is
    resumed from by an interrupted run with the same settings and deleted once training ends.
    """
    rows = rows[rows["id"].isin(list(ir_labels))]
    if rows.empty:
        raise ValueError("no IR labels for the images to train IRNet on: run make_ir_labels")
    labels = [ir_labels[i] for i in rows["id"]]
    inputs = (labels, rows, settings, train, seed, device)
    return distributed.launched(_fit_irnet, inputs, train.processes)


def _fit_irnet(inputs: tuple, progress: bool) -> tuple[dict, pd.DataFrame]:
    labels, rows, settings, train, seed, device = inputs
    config = irnet_config(settings, seed, train.max_steps)
    torch.manual_seed(config.seed)
    model = IRNet(settings.backbone, settings.weights, settings.image_scale)
    dataset = IrLabelDataset(
        [partial(read_rgb, path) for path in rows["image_path"]], labels,
        crop_size=config.crop_size, hflip=True, seed=config.seed, stride=model.stride,
    )  # fmt: skip
    checkpoint = scratch_checkpoint(
        train.checkpoint_dir, "irnet", irnet=settings.model_dump(), images=list(rows["id"])
    )
    history = train_irnet(
        model, dataset, config, checkpoint, distributed.process_device(device), progress
    )
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, history


def trained_irnet(
    settings: Irnet, state: Mapping[str, torch.Tensor], device: torch.device
) -> IRNet:
    """IRNet of ``settings`` with the trained ``state``, in eval mode on ``device``."""
    model = IRNet(settings.backbone, image_scale=settings.image_scale)
    model.load_state_dict(state)
    return model.to(device).eval()


def _edge_map(model: nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    return predict_edge(model, to_tensor(image).to(device)).cpu().numpy()


def _pseudo_mask(
    image_path: str,
    load_cam: Callable,
    mode: str,
    settings: Mapping[str, Any],
    model: nn.Module | None,
    device: torch.device,
) -> np.ndarray:
    image = read_rgb(image_path)
    if model is None:
        return pseudo_mask(image, load_cam(), mode, **settings)
    edge = _edge_map(model, image, device)
    return pseudo_mask(image, load_cam(), mode, edge=edge, edge_stride=model.stride, **settings)


def pseudo_mask_jobs(
    cams: CamSet,
    rows: pd.DataFrame,
    mode: str,
    settings: Mapping[str, Any],
    model: nn.Module | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Callable[[], np.ndarray]]:
    """The pseudo mask of every image of ``rows`` (see :func:`pseudo_mask`); ``model`` is the
    trained IRNet for the ``irn`` modes, in eval mode."""
    if mode.startswith("irn") and model is None:
        raise ValueError(f"refine mode {mode!r} needs a trained IRNet")
    device = torch.device(device)
    return {
        row.id: partial(_pseudo_mask, row.image_path, cams[row.id], mode, settings, model, device)
        for row in _rows_with_cams(cams, rows).itertuples(index=False)
    }


def _walk_record(
    image_path: str,
    load_cam: Callable,
    walk: Mapping[str, Any],
    model: nn.Module,
    device: torch.device,
) -> dict[str, np.ndarray]:
    image, cam = read_rgb(image_path), load_cam()
    edge = _edge_map(model, image, device)
    scores = propagated_scores(cam, edge, image.shape[:2], walk, model.stride)
    return {"keys": np.asarray(cam["keys"]), "cam": scores, "edge": edge}


def walk_jobs(
    cams: CamSet,
    rows: pd.DataFrame,
    walk: Mapping[str, Any],
    model: nn.Module,
    device: torch.device | str = "cpu",
) -> dict[str, Callable[[], dict[str, np.ndarray]]]:
    """IRNet's edge map (``edge``) and the random walk's scores before thresholding (``cam``,
    for the CAMs' ``keys``) of every image of ``rows``, for the ``irn`` diagnostics; ``walk``
    as in ``pseudo_masks.walk`` (nothing is thresholded)."""
    device = torch.device(device)
    return {
        row.id: partial(_walk_record, row.image_path, cams[row.id], walk, model, device)
        for row in _rows_with_cams(cams, rows).itertuples(index=False)
    }
