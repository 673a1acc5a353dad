"""Kedro project settings."""

from kedro.config import OmegaConfigLoader
from kedro.framework.project import pipelines

from semples.hooks import MlflowCopies, ParameterValidation, RunRecords


def untracked_pipelines(tracking: object) -> list[str]:
    """kedro-mlflow's ``disable_tracking.pipelines``: none, or every pipeline when MLflow is
    switched off (``kedro run --params=mlflow=false``)."""
    switch = str(tracking).lower()
    if switch not in ("true", "false"):
        raise ValueError(f"the parameter mlflow must be true or false, got {tracking!r}")
    return [] if switch == "true" else sorted(pipelines)


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/voc, conf/coco and conf/test override only the keys they name.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    "custom_resolvers": {"semples.untracked_pipelines": untracked_pipelines},
}

HOOKS = (ParameterValidation(), RunRecords(), MlflowCopies())
