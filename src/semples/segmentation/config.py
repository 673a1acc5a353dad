"""The MMEngine config of one DeepLabV2 training run: a packaged recipe plus the run's data.

The recipe (model, augmentation, schedule) lives in MMSegmentation-style layered configs under
``configs/``; a run names one and overrides only what its parameters set, so the config file
stays the single statement of the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config

from semples.checkpoints import fingerprint as run_fingerprint

CONFIG_DIR = Path(__file__).parent / "configs"
LOSSES = {
    "ce": dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True),
    "balanced_ce": dict(type="BalancedCrossEntropyLoss", loss_weight=1.0),
}
Pairs = Sequence[tuple[str, str]]


def packaged_configs() -> list[str]:
    """Names of the runnable configs shipped in the package."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.py"))


def config_path(name: str) -> Path:
    """A packaged config by name (``.py`` optional), or a path to one's own config file."""
    for candidate in (CONFIG_DIR / f"{name.removesuffix('.py')}.py", Path(name)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no segmentation config {name!r}: neither a file nor one of {packaged_configs()}"
    )


@dataclass(frozen=True)
class TrainSettings:
    """What a run may override in its recipe; ``None`` keeps the config's value."""

    crop_size: int | None = None
    batch_size: int | None = None
    max_iters: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    loss: str | None = None  # ce | balanced_ce
    amp: bool = True  # mixed precision (fp16, dynamic loss scale) when training on CUDA
    num_workers: int | None = None
    val_interval: int | None = None
    checkpoint_interval: int | None = None
    log_interval: int | None = None

    def __post_init__(self) -> None:
        for name in ("crop_size", "batch_size", "max_iters", "val_interval",
                     "checkpoint_interval", "log_interval"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"segmentation.train.{name} must be a positive integer, got {value!r}"
                )
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"segmentation.train.{name} must be >= 0, got {value!r}")
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(
                f"segmentation.train.loss must be one of {list(LOSSES)}, got {self.loss!r}"
            )
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"segmentation.train.num_workers must be >= 0, got {self.num_workers}")


def _set_crop_size(cfg: Config, size: int) -> None:
    crops = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "RandomCrop"]
    if not crops:
        raise ValueError("crop_size is set but the config's train pipeline has no RandomCrop")
    for transform in crops:
        transform["crop_size"] = (size, size)
    cfg.model.data_preprocessor.size = (size, size)


def _set_max_iters(cfg: Config, max_iters: int) -> None:
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = min(cfg.train_cfg.get("val_interval", max_iters), max_iters)
    for scheduler in cfg.param_scheduler:
        scheduler["end"] = max_iters


def _apply(cfg: Config, settings: TrainSettings) -> None:
    if settings.crop_size is not None:
        _set_crop_size(cfg, settings.crop_size)
    if settings.batch_size is not None:
        cfg.train_dataloader.batch_size = settings.batch_size
    if settings.max_iters is not None:
        _set_max_iters(cfg, settings.max_iters)
    if settings.lr is not None:
        cfg.optim_wrapper.optimizer.lr = settings.lr
    if settings.weight_decay is not None:
        cfg.optim_wrapper.optimizer.weight_decay = settings.weight_decay
    if settings.loss is not None:
        cfg.model.decode_head.loss_decode = dict(LOSSES[settings.loss])
    if settings.num_workers is not None:
        for loader in filter(None, (cfg.train_dataloader, cfg.val_dataloader)):
            loader.num_workers = settings.num_workers
            loader.persistent_workers = settings.num_workers > 0
    if settings.val_interval is not None:
        cfg.train_cfg.val_interval = settings.val_interval
    if settings.checkpoint_interval is not None:
        cfg.default_hooks.checkpoint.interval = settings.checkpoint_interval
    if settings.log_interval is not None:
        cfg.default_hooks.logger.interval = settings.log_interval
    if settings.amp and torch.cuda.is_available():
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"


def _set_data(cfg: Config, classes: Sequence[str], train_pairs: Pairs, val_pairs: Pairs) -> None:
    if not train_pairs:
        raise ValueError("no (image, pseudo mask) pair to train DeepLabV2 on")
    cfg.model.decode_head.num_classes = len(classes)
    cfg.train_dataloader.dataset.update(pairs=[list(p) for p in train_pairs], classes=list(classes))
    if val_pairs:
        cfg.val_dataloader.dataset.update(pairs=[list(p) for p in val_pairs], classes=list(classes))
        cfg.test_dataloader = cfg.val_dataloader
    else:  # nothing to validate on: MMEngine needs all three val entries unset together
        for key in ("val_dataloader", "val_cfg", "val_evaluator",
                    "test_dataloader", "test_cfg", "test_evaluator"):  # fmt: skip
            cfg[key] = None


def _set_backbone_weights(cfg: Config, path: str | None, prefix: str | None) -> None:
    if path is None:
        return
    if not Path(path).is_file():
        raise FileNotFoundError(f"DeepLabV2 backbone weights {path} do not exist")
    init = dict(type="Pretrained", checkpoint=str(path))
    if prefix:
        init["prefix"] = prefix
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = init


def training_config(
    name: str,
    *,
    classes: Sequence[str],
    train_pairs: Pairs,
    val_pairs: Pairs = (),
    settings: TrainSettings = TrainSettings(),
    seed: int = 0,
    backbone_weights: str | None = None,
    backbone_prefix: str | None = None,
    cfg_options: Mapping[str, Any] | None = None,
) -> Config:
    """The recipe ``name`` with the run's classes, data, seed and overrides; ``cfg_options``
    is merged last, like MMSegmentation's ``--cfg-options`` (nested keys)."""
    cfg = Config.fromfile(config_path(name))
    _set_data(cfg, classes, train_pairs, val_pairs)
    _apply(cfg, settings)
    _set_backbone_weights(cfg, backbone_weights, backbone_prefix)
    cfg.randomness = dict(seed=seed, deterministic=False)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def fingerprint(cfg: Config) -> str:
    """A short hash of everything that defines the run (data paths included, work dir not), so
    an interrupted run and its rerun share a work dir and a changed run gets a fresh one."""
    return run_fingerprint(
        {key: value for key, value in cfg.to_dict().items() if key != "work_dir"}
    )
