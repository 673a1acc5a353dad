"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from semples.hooks import ParameterValidation, RunRecords

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/voc, conf/coco and conf/test override only the keys they name.
    "merge_strategy": {"parameters": "soft"},
}

HOOKS = (ParameterValidation(), RunRecords())
