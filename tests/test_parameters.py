"""The parameter schema: every environment's parameters pass, and each kind of mistake is
named with its dotted key, its value and the reason, before any node runs."""

import copy
import json
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from kedro_project import copy_project, mlflow_runs, run_kedro
from semples.parameters import (
    ParameterError,
    PseudoLabels,
    parse_section,
    validate_parameters,
)

ROOT = Path(__file__).resolve().parents[1]


def parameters(env: str | None = None) -> dict:
    loader = OmegaConfigLoader(
        str(ROOT / "conf"), base_env="base", default_run_env="local", env=env,
        merge_strategy={"parameters": "soft"},
    )  # fmt: skip
    return copy.deepcopy(dict(loader["parameters"]))


@pytest.fixture(scope="module")
def base() -> dict:
    return parameters()


def flatten(tree: dict, prefix: str = "") -> dict:
    """Dotted key -> leaf, as kedro-mlflow flattens parameters (empty dicts leave no key)."""
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves.update(flatten(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def changed(params: dict, dotted: str, value) -> dict:
    params = copy.deepcopy(params)
    *parents, last = dotted.split(".")
    section = params
    for key in parents:
        section = section[key]
    section[last] = value
    return params


@pytest.mark.parametrize("env", [None, "test", "voc", "coco"])
def test_every_environment_validates(env, tmp_path):
    params = parameters(env)
    dataset = params["ingestion"]["dataset"]
    if dataset != "toy":  # a real dataset needs its root folder
        params = changed(params, f"ingestion.{dataset}.root", str(tmp_path))
    validate_parameters(params)


@pytest.mark.parametrize(
    "dotted,value,message",
    [
        (
            "pseudo_labels.train.max_step",
            1,
            r"pseudo_labels\.train\.max_step: unknown key; did you mean `max_steps`\?",
        ),
        (
            "pseudo_labels.train.common.lamda_b",
            1,
            r"did you mean `lambda_b`\?",
        ),
        (
            "ingestion.toy.context_fil",
            1,
            r"ingestion\.toy\.context_fil: unknown key; did you mean `context_fill`\?",
        ),
        (
            "pseudo_labels.toy_clip.pretraining.epoch",
            1,
            r"did you mean `epochs`\?",
        ),
        (
            "pseudo_labels.pseudo_masks.refine",
            "irm",
            r"pseudo_masks\.refine = 'irm': Input should be 'none', 'crf', 'irn' or 'irn\+crf'",
        ),
        (
            "pseudo_labels.train.common.similarity_floor",
            1.0,
            r"common\.similarity_floor = 1\.0: .*less than 0\.9999",
        ),
        (
            "pseudo_labels.train.prompt_images",
            "single",
            r"prompt_images = 'single': Input should be 'all' or 'single_class'",
        ),
        (
            "pseudo_labels.train.loss_ablation",
            "al",
            r"loss_ablation = 'al'",
        ),
        (
            "pseudo_labels.background_prompts",
            "leaned",
            r"background_prompts = 'leaned'",
        ),
        (
            "pseudo_labels.generator.arch",
            "resnet51",
            r"generator\.arch = 'resnet51'.*'small_fcn'",
        ),
        (
            "pseudo_labels.generator.options",
            {"dilations": [2]},
            r"generator: .*options \{'dilations': \[2\]\} do not fit 'small_fcn'.*two integers",
        ),
        (
            "pseudo_labels.generator.options",
            {"output_strid": 8},
            r"options \{'output_strid': 8\} do not fit 'small_fcn'.*'output_strid'",
        ),
        (
            "pseudo_labels.pseudo_masks.irnet.backbone",
            "big",
            r"irnet\.backbone = 'big'",
        ),
        (
            "pseudo_labels.device",
            "gpu",
            r"pseudo_labels\.device = 'gpu'",
        ),
        (
            "pseudo_labels.train.common.batch_size",
            "abc",
            r"pseudo_labels\.train\.common\.batch_size = 'abc': Input should be a valid integer",
        ),
        (
            "pseudo_labels.train.stage1.lr",
            -1.0,
            r"stage1\.lr = -1\.0: Input should be greater than 0",
        ),
        (
            "pseudo_labels.pseudo_masks.cam_threshold",
            1.5,
            r"cam_threshold = 1\.5: Input should be less than or equal to 1",
        ),
        (
            "pseudo_labels.pseudo_masks.ir_labels.bg_threshold",
            0.9,
            r"bg_threshold \(0\.9\) must not exceed fg_threshold \(0\.4\)",
        ),
        (
            "pseudo_labels.text_template",
            "a photo",
            r"text_template needs a '\{\}'",
        ),
        (
            "ingestion.toy.co_occurrence",
            1.5,
            r"co_occurrence must be in \[0, 1\], got 1\.5",
        ),
        (
            "ingestion.dataset",
            "imagenet",
            r"ingestion\.dataset = 'imagenet'",
        ),
        (
            "pseudo_labels.clip.weights",
            "/nowhere/clip.pt",
            r"clip\.weights = '/nowhere/clip\.pt': no such file: /nowhere/clip\.pt",
        ),
        (
            "pseudo_labels.generator.weights",
            "/nowhere/g.pt",
            r"no such file: /nowhere/g\.pt",
        ),
        (
            "segmentation.backbone_weights",
            "/nowhere/r18.pth",
            r"segmentation\.backbone_weights .*no such file",
        ),
        (
            "segmentation.train.loss",
            "dice",
            r"segmentation\.train\.loss = 'dice'",
        ),
        (
            "reporting.per_class_runs",
            0,
            r"reporting\.per_class_runs = 0",
        ),
        (  # the library no longer checks these itself: it takes the typed configs
            "segmentation.train.max_iter",
            10,
            r"segmentation\.train\.max_iter: unknown key; did you mean `max_iters`\?",
        ),
        (
            "pseudo_labels.background_prompts",
            "written",
            r"pseudo_labels\.background_prompts = 'written'",
        ),
    ],
)
def test_each_mistake_is_named(base, dotted, value, message):
    with pytest.raises(ParameterError, match=message):
        validate_parameters(changed(base, dotted, value))


def test_every_problem_is_listed_and_other_sections_can_be_skipped(base):
    params = changed(changed(base, "pseudo_labels.seed", -1), "segmentation.seed", "x")
    with pytest.raises(ParameterError) as error:
        validate_parameters(params)
    lines = str(error.value).splitlines()
    assert lines[0] == "invalid parameters:" and len(lines) == 3
    validate_parameters(params, sections={"ingestion", "reporting"})


def test_a_section_parses_into_its_typed_config_with_defaults(base):
    section = copy.deepcopy(base["pseudo_labels"])
    del section["device"]
    config = parse_section("pseudo_labels", section)
    assert isinstance(config, PseudoLabels) and config.device == "auto"
    assert config.train.common.lambda_b == section["train"]["common"]["lambda_b"]
    with pytest.raises(ParameterError, match=r"pseudo_labels\.train\.max_step: unknown key"):
        parse_section("pseudo_labels", changed(section, "train.max_step", 1))


@pytest.mark.parametrize("section", ["pseudo_labels", "segmentation"])
def test_a_typed_sections_json_dump_is_the_whole_section(base, section):
    """What the reports carry as ``params``: the typed config's dump."""
    params = parse_section(section, base[section]).model_dump(mode="json")
    assert json.loads(json.dumps(params)) == params
    reported, configured = flatten(params), flatten(base[section])
    # Every configured leaf under the same dotted key (the MLflow key without "<section>."),
    # with the same value; defaults the YAML leaves out are reported as well.
    assert {key: reported.get(key) for key in configured} == configured


def test_a_typo_stops_kedro_run_before_any_node(tmp_path):
    """The hook runs before the first node and before kedro-mlflow's: the run fails in seconds,
    names the key and leaves no MLflow run."""
    project = copy_project(tmp_path)
    result = run_kedro(project, "run", "--pipeline=pseudo_labels",
                       "--params=pseudo_labels.train.max_step=1", check=False)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did you mean `max_steps`?" in output
    assert "Running node" not in output
    assert mlflow_runs(project) == []


def test_clip_weights_must_fit_the_named_architecture(base, tmp_path):
    """A fitting file passes; another architecture's or a corrupt file is named with the
    architecture, before any training."""
    import torch

    from semples.clip import TOY_CLIP
    from semples.clip.model import load_clip, save_clip_weights

    fitting = tmp_path / "toy.pt"
    save_clip_weights(load_clip(TOY_CLIP), fitting)
    validate_parameters(changed(base, "pseudo_labels.clip.weights", str(fitting)))
    state = torch.load(fitting, weights_only=True)
    key = next(iter(state))
    state[key] = torch.zeros(3, 1)
    misfit = tmp_path / "misfit.pt"
    torch.save(state, misfit)
    with pytest.raises(ParameterError, match=rf"{misfit} does not hold weights of CLIP {TOY_CLIP}"):
        validate_parameters(changed(base, "pseudo_labels.clip.weights", str(misfit)))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ParameterError, match=rf"{corrupt} is not a torch state-dict file"):
        validate_parameters(changed(base, "pseudo_labels.clip.weights", str(corrupt)))
