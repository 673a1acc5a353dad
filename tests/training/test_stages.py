"""Stages from plain parameters: in this process and as 2 DDP processes (gloo on the CPU)."""

import copy

import pytest
import torch

from layouts import make_toy_index
from semples.clip import TOY_CLIP
from semples.clip.model import load_clip
from semples.data.toy_world import TOY_CLASSES
from semples.training import stages

PARAMS = {
    "device": "cpu",
    "seed": 0,
    "clip": {"name": TOY_CLIP, "pretrained": None, "weights": None, "precision": "fp32"},
    "generator": {"arch": "small_fcn", "weights": None},
    "prompts": {"length": 4, "prefix": "a photo of"},
    "text_template": "a photo of {}.",
    "background_prompts": "learned",
    "handwritten_prompts": {name: f"a photo of {name}'s background." for name in TOY_CLASSES},
    "train": {
        "splits": ["train"],
        "augmentation": {"resize_long": None, "hflip": True, "crop_size": None},
        "loss_ablation": "all",
        "stage3_init": "stage1_initial",
        "max_steps": None,
        "processes": 1,
        "checkpoint_dir": None,
        "common": {"batch_size": 2, "area_weight": 1.0},
        "stage1": {"epochs": 1, "lr": 1e-3},
        "stage2": {"epochs": 1, "lr": 1e-2},
        "stage3": {"epochs": 1, "lr": 1e-3},
    },
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> stages.StageInputs:
    torch.manual_seed(0)
    clip_state = load_clip(TOY_CLIP).model.state_dict()
    index = make_toy_index(tmp_path_factory.mktemp("toy"), num_train=4, num_val=0)
    initial, _ = stages.initial_generator_state(PARAMS, index, len(TOY_CLASSES))
    return stages.StageInputs(
        stage=1,
        params=copy.deepcopy(PARAMS),
        image_index=index,
        class_names=list(TOY_CLASSES),
        clip_state=clip_state,
        generator_state=initial,
    )


def test_initial_generator_is_seeded_and_cam_pretraining_trains_it(inputs):
    random_init, history = stages.initial_generator_state(PARAMS, inputs.image_index, 6)
    assert history.empty
    assert all(torch.equal(random_init[k], v) for k, v in inputs.generator_state.items())
    params = copy.deepcopy(PARAMS)
    params["generator"]["cam_pretraining"] = {"epochs": 2, "batch_size": 2}
    trained, history = stages.initial_generator_state(params, inputs.image_index, 6)
    assert len(history) == 4 and history["bce"].notna().all()
    assert not all(torch.equal(trained[k], v) for k, v in random_init.items())
    params["train"]["max_steps"] = 1
    _, capped = stages.initial_generator_state(params, inputs.image_index, 6)
    assert len(capped) == 1


def test_cam_pretraining_runs_as_two_ddp_processes_and_removes_its_checkpoint(inputs, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["generator"]["cam_pretraining"] = {"epochs": 2, "batch_size": 1}
    params["train"].update(processes=2, checkpoint_dir=str(tmp_path))
    trained, history = stages.initial_generator_state(params, inputs.image_index, 6)
    # 4 images dealt to 2 processes with batch 1: 2 synchronised steps per epoch.
    assert history["step"].tolist() == [1, 2, 3, 4] and history["bce"].notna().all()
    assert set(trained) == set(inputs.generator_state)
    assert not list(tmp_path.iterdir())


def test_stage_in_this_process_returns_plain_states(inputs):
    state, history = stages.run_stage(inputs, progress=False)
    assert set(state) == {"generator", "prompts"} and list(state["prompts"]) == ["context"]
    assert len(history) == 2 and history["total"].notna().all()


def test_two_ddp_processes_on_the_cpu(inputs):
    inputs.params["train"]["processes"] = 2
    state, history = stages.run_stage_launched(inputs)
    # 4 images dealt to 2 processes with batch 2: one synchronised step.
    assert len(history) == 1 and torch.isfinite(torch.tensor(history["total"].tolist())).all()
    assert set(state["generator"]) == set(inputs.generator_state)
    assert not all(torch.equal(state["generator"][k], v) for k, v in inputs.generator_state.items())


def test_stage3_initial_weights_follow_the_switch():
    stage1 = {"initial_generator": {"w": torch.zeros(1)}, "generator": {"w": torch.ones(1)}}
    assert stages.stage3_initial_state(stage1, "stage1_initial")["w"].item() == 0
    assert stages.stage3_initial_state(stage1, "stage1_final")["w"].item() == 1
    with pytest.raises(ValueError, match="stage3_init must be one of"):
        stages.stage3_initial_state(stage1, "random")


def test_skipped_stages_of_each_configuration():
    def skipped(loss_ablation="all", background_prompts="learned"):
        params = copy.deepcopy(PARAMS)
        params["train"]["loss_ablation"] = loss_ablation
        return set(stages.skipped_stages({**params, "background_prompts": background_prompts}))

    assert skipped() == set()
    assert skipped("none") == {1, 2, 3}
    assert skipped("match_only") == {2, 3}
    assert skipped(background_prompts="handwritten") == {2}
    assert skipped("refine_unlearned") == {2}
    assert skipped("no_refine") == {2}
    with pytest.raises(ValueError, match="loss_ablation must be one of"):
        skipped("nothing")


def test_handwritten_background_texts_in_class_order():
    params = {**PARAMS, "background_prompts": "handwritten"}
    texts = stages.background_texts(params, ["boat", "cow"])
    assert texts == ["a photo of boat's background.", "a photo of cow's background."]
    assert stages.background_texts(PARAMS, ["boat"]) is None
    with pytest.raises(ValueError, match=r"no text for classes \['bus'\]"):
        stages.background_texts(params, ["bus"])


def test_toy_clip_is_used_unless_real_weights_are_configured():
    assert stages.uses_toy_clip(PARAMS["clip"])
    assert not stages.uses_toy_clip({**PARAMS["clip"], "weights": "/w.pt"})
    assert not stages.uses_toy_clip({**PARAMS["clip"], "name": "ViT-B-32"})
    with pytest.raises(ValueError, match="the toy CLIP has no pretrained weights"):
        stages.frozen_clip(PARAMS["clip"], {}, torch.device("cpu"))


def test_generator_options_and_weights_reach_the_generator():
    settings = {"arch": "small_fcn", "weights": None, "options": {"output_stride": 8}}
    generator = stages.generator_module(settings, len(TOY_CLASSES))
    assert generator.output_stride == 8
    state = {k: torch.zeros_like(v) for k, v in generator.state_dict().items()}
    restored = stages.generator_module(settings, len(TOY_CLASSES), state)
    assert all(torch.equal(v, state[k]) for k, v in restored.state_dict().items())
