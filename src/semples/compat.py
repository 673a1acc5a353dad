"""Make torchvision, open_clip, timm and ``mmseg.models`` importable on a CPU-only torch.

Two breakages of the pinned stack (shared/ENVIRONMENT.md) stop those imports on a machine with
the CPU torch wheel:

* the torchvision wheel is a CUDA build whose C extension cannot load there, and
  ``torchvision/_meta_registrations.py`` then fails registering fake kernels for the missing
  ``torchvision::nms`` / ``torchvision::qnms`` operators;
* mmcv-lite has no compiled ``mmcv._ext``, so ``mmcv.ops`` cannot be imported, and four modules
  of mmsegmentation import it unguarded.

Each fix is applied only where the breakage exists: when torchvision's extension loads, or when
``mmcv._ext`` is present, this module changes nothing. It is imported first by ``semples``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

_TORCHVISION_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# Kept alive for the life of the process: dropping a Library deregisters its definitions.
_torchvision_fallback_library: torch.library.Library | None = None


def torchvision_extension_loads() -> bool:
    """Whether torchvision's compiled extension loads into this torch (without importing it)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    extension = next(Path(spec.origin).parent.glob("_C*.so"), None)
    if extension is None:
        return False
    try:
        torch.ops.load_library(str(extension))
    except (OSError, RuntimeError):
        return False
    return True


def _operator_exists(namespace: str, name: str) -> bool:
    return torch._C._dispatch_has_kernel(f"{namespace}::{name}") or bool(
        torch._C._jit_get_schemas_for_operator(f"{namespace}::{name}")
    )


def ensure_torchvision_ops() -> bool:
    """Define the operator schemas torchvision's import needs when its extension cannot load.

    Returns True when schemas were defined (the stand-in is active). Calling the operators
    then fails with torch's "no kernel" error: detection ops are unavailable, imports work.
    """
    global _torchvision_fallback_library
    if "torchvision" in sys.modules or torchvision_extension_loads():
        return False
    missing = {
        name: schema
        for name, schema in _TORCHVISION_OP_SCHEMAS.items()
        if not _operator_exists("torchvision", name)
    }
    if not missing:
        return False
    _torchvision_fallback_library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in missing.values():
        _torchvision_fallback_library.define(schema)
    return True


def point_sample(
    input: torch.Tensor, points: torch.Tensor, align_corners: bool = False, **kwargs
) -> torch.Tensor:
    """``mmcv.ops.point_sample`` in pure torch: sample ``input`` at points in [0, 1]^2."""
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return output.squeeze(3) if add_dim else output


def sigmoid_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``mmcv.ops.sigmoid_focal_loss`` in pure torch (target: class indices, N x C logits)."""
    one_hot = F.one_hot(target.long(), input.size(1) + 1)[:, : input.size(1)].to(input.dtype)
    probs = input.sigmoid()
    log_p = F.logsigmoid(input)
    log_not_p = F.logsigmoid(-input)
    loss = (
        -alpha * (1 - probs).pow(gamma) * one_hot * log_p
        - (1 - alpha) * probs.pow(gamma) * (1 - one_hot) * log_not_p
    )
    if weight is not None:
        loss = loss * weight.view(-1, 1)
    if reduction == "mean":
        return loss.sum() / input.size(0)
    if reduction == "sum":
        return loss.sum()
    return loss


def _missing_compiled_op(name: str):
    if name.startswith("_"):
        raise AttributeError(name)
    raise ModuleNotFoundError(
        f"mmcv.ops.{name} needs mmcv's compiled extension (mmcv._ext), which mmcv-lite lacks; "
        "install the full mmcv 2.1.0 to use it"
    )


def ensure_mmcv_ops() -> bool:
    """Install a pure-torch stand-in for ``mmcv.ops`` when ``mmcv._ext`` is absent.

    The stand-in offers ``point_sample`` and ``sigmoid_focal_loss``; any other name raises
    ModuleNotFoundError, which mmsegmentation's own guarded imports expect. Returns True when
    the stand-in was installed.
    """
    if "mmcv.ops" in sys.modules or importlib.util.find_spec("mmcv") is None:
        return False
    if importlib.util.find_spec("mmcv._ext") is not None:
        return False
    import mmcv

    stand_in = types.ModuleType("mmcv.ops", "Pure-torch stand-in for mmcv.ops (semples.compat)")
    stand_in.__file__ = __file__
    stand_in.point_sample = point_sample
    stand_in.sigmoid_focal_loss = sigmoid_focal_loss
    stand_in.__getattr__ = _missing_compiled_op
    sys.modules["mmcv.ops"] = stand_in
    mmcv.ops = stand_in
    return True


TORCHVISION_STAND_IN = ensure_torchvision_ops()
MMCV_OPS_STAND_IN = ensure_mmcv_ops()
