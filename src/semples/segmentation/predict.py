"""DeepLabV2 test-time inference: whole images, multi-scale + flip, optionally a dense CRF.

MMSegmentation's ``SegTTAModel`` averages the probabilities but does not hand them back, and the
CRF needs them; so the few lines of scale / flip averaging are written here around the model's
own preprocessor, backbone and head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch import nn

import semples.segmentation  # noqa: F401  (registers DeepLabV2Head)
from semples.data.images import read_rgb
from semples.refine.crf import dense_crf


def build_segmentor(model_config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                    device: str | torch.device = "cpu") -> nn.Module:  # fmt: skip
    """The trained model in eval mode; pretrained-weight loading is switched off (the state
    dict holds every weight) and a mismatched state dict is an error, not a warning."""
    init_default_scope("mmseg")
    config = Config(dict(model=dict(model_config))).model
    config.pretrained = None
    config.backbone.init_cfg = None
    model = MODELS.build(config)
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


@torch.no_grad()
def class_probabilities(
    model: nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """C x H x W softmax probabilities of an RGB ``image``, averaged over ``scales`` (each
    resized bilinearly) and their horizontal flips; logits are upsampled to the image size."""
    if not scales or min(scales) <= 0:
        raise ValueError(f"test scales must be positive, got {list(scales)}")
    height, width = image.shape[:2]
    device = next(model.parameters()).device
    bgr = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1).to(device)
    inputs = model.data_preprocessor(dict(inputs=[bgr]), False)["inputs"]
    total, count = None, 0
    for scale in scales:
        scaled = F.interpolate(inputs, scale_factor=scale, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            batch = scaled.flip(-1) if flipped else scaled
            logits = model.decode_head(model.extract_feat(batch))
            logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
            probs = logits.float().softmax(dim=1)[0]
            probs = probs.flip(-1) if flipped else probs
            total = probs if total is None else total + probs
            count += 1
    return (total / count).cpu()


def predict_labels(
    model: nn.Module,
    image: np.ndarray,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crf: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The H x W uint8 label map: argmax of the averaged probabilities, after a dense CRF over
    all classes when ``crf`` gives its settings (no image labels exist at test time)."""
    probs = class_probabilities(model, image, scales, flip).numpy()
    if crf is not None:
        probs = dense_crf(image, probs, **crf)
    return probs.argmax(axis=0).astype(np.uint8)


def prediction_jobs(
    model: nn.Module,
    rows: pd.DataFrame,
    scales: Sequence[float],
    flip: bool,
    crf: Mapping[str, Any] | None = None,
) -> dict[str, Callable[[], np.ndarray]]:
    """id -> callable predicting that image, so a mask set writes them one at a time."""
    return {
        row.id: partial(_predict_file, model, row.image_path, scales, flip, crf)
        for row in rows.itertuples(index=False)
    }


def _predict_file(model: nn.Module, path: str, *args) -> np.ndarray:
    return predict_labels(model, read_rgb(path), *args)
