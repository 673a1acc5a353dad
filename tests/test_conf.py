"""The configuration environments: the toy defaults may tune, VOC and COCO keep the paper's."""

import copy
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from semples.parameters import PseudoLabels, parse_section
from semples.settings import CONFIG_LOADER_ARGS
from semples.training.stages import stage_config_of

CONF = Path(__file__).resolve().parents[1] / "conf"


def pseudo_labels(env: str) -> dict:
    loader = OmegaConfigLoader(
        str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env},
        runtime_params={"voc_root": "/voc", "coco_root": "/coco", "clip_weights": "/w.pt"},
    )  # fmt: skip
    return loader["parameters"]["pseudo_labels"]


def typed(params: dict) -> PseudoLabels:
    """The section as the library takes it; the weights files named above do not exist here."""
    params = copy.deepcopy(params)
    params["clip"]["weights"] = params["generator"]["weights"] = None
    params["pseudo_masks"]["irnet"]["weights"] = None
    return parse_section("pseudo_labels", params)


@pytest.mark.parametrize(
    "env,lambdas", [("voc", (2.4, 0.02, 0.05)), ("coco", (0.75, 0.01, 0.2))]
)
def test_voc_and_coco_keep_the_papers_stages(env, lambdas):
    """Soft merging lets a toy default leak into VOC / COCO unless they name the key."""
    params = pseudo_labels(env)
    assert params["train"]["stage3_init"] == "stage1_initial"
    assert params["train"]["prompt_images"] == "all"
    assert stage_config_of(2, typed(params)).similarity_floor is None  # the paper's clamp
    for stage in (1, 3):
        config = stage_config_of(stage, typed(params))
        assert (config.lambda_b, config.lambda_t, config.lam) == lambdas
        assert config.mask_activation == "sigmoid" and config.trainable == "all"
        assert config.epochs == 60
    assert params["pseudo_masks"]["irnet"]["image_scale"] == 1  # IRN's stride 4


def test_toy_irnet_works_at_stride_2():
    assert pseudo_labels("local")["pseudo_masks"]["irnet"]["image_scale"] == 2


def test_toy_default_stages():
    config = stage_config_of(3, typed(pseudo_labels("local")))
    assert config.mask_activation == "relu_max" and config.area_weight > 0
    assert pseudo_labels("local")["train"]["prompt_images"] == "single_class"
    assert config.similarity_floor == 0.05
