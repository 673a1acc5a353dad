"""Stages from the typed run config: in this process and as 2 DDP processes (gloo on the CPU)."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from layouts import make_toy_index
from semples.clip import TOY_CLIP
from semples.clip.model import load_clip
from semples.data.toy_world import TOY_CLASSES
from semples.parameters import PseudoLabels
from semples.training import stages
from toy_runs import toy_run

# Random-init generator, short prompts, batch 2: the stages' mechanics, not their results.
CHANGES = {
    "generator.cam_pretraining": None,
    "prompts.length": 4,
    "text_template": "a photo of {}.",
    "handwritten_prompts": {name: f"a photo of {name}'s background." for name in TOY_CLASSES},
    "train.augmentation.hflip": True,
    "train.stage3_init": "stage1_initial",
    "train.common.batch_size": 2,
}


def run_of(**changes) -> PseudoLabels:
    """The test's run with more dotted-key ``changes`` (``train__processes`` for
    ``train.processes``)."""
    return toy_run({**CHANGES, **{k.replace("__", "."): v for k, v in changes.items()}})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> stages.StageInputs:
    torch.manual_seed(0)
    clip_state = load_clip(TOY_CLIP).model.state_dict()
    index = make_toy_index(tmp_path_factory.mktemp("toy"), num_train=4, num_val=0)
    initial, _ = stages.initial_generator_state(run_of(), index, len(TOY_CLASSES))
    return stages.StageInputs(
        stage=1,
        run=run_of(),
        image_index=index,
        class_names=list(TOY_CLASSES),
        clip_state=clip_state,
        generator_state=initial,
    )


def test_initial_generator_is_seeded_and_cam_pretraining_trains_it(inputs, tmp_path):
    random_init, history = stages.initial_generator_state(run_of(), inputs.image_index, 6)
    assert history.empty
    assert all(torch.equal(random_init[k], v) for k, v in inputs.generator_state.items())
    pretraining = {"epochs": 2, "batch_size": 2}
    scratch = str(tmp_path)
    run = run_of(generator__cam_pretraining=pretraining, train__checkpoint_dir=scratch)
    trained, history = stages.initial_generator_state(run, inputs.image_index, 6)
    assert len(history) == 4 and history["bce"].notna().all()
    assert not all(torch.equal(trained[k], v) for k, v in random_init.items())
    capped_run = run_of(generator__cam_pretraining=pretraining, train__checkpoint_dir=scratch,
                        train__max_steps=1)  # fmt: skip
    _, capped = stages.initial_generator_state(capped_run, inputs.image_index, 6)
    assert len(capped) == 1


def test_cam_pretraining_runs_as_two_ddp_processes_and_removes_its_checkpoint(inputs, tmp_path):
    run = run_of(generator__cam_pretraining={"epochs": 2, "batch_size": 1},
                 train__processes=2, train__checkpoint_dir=str(tmp_path))  # fmt: skip
    trained, history = stages.initial_generator_state(run, inputs.image_index, 6)
    # 4 images dealt to 2 processes with batch 1: 2 synchronised steps per epoch.
    assert history["step"].tolist() == [1, 2, 3, 4] and history["bce"].notna().all()
    assert set(trained) == set(inputs.generator_state)
    assert not list(tmp_path.iterdir())


def test_stage_in_this_process_returns_plain_states(inputs):
    state, history = stages.run_stage(inputs, progress=False)
    assert set(state) == {"generator", "prompts"} and list(state["prompts"]) == ["context"]
    assert len(history) == 2 and history["total"].notna().all()


def test_two_ddp_processes_on_the_cpu(inputs):
    state, history = stages.run_stage_launched(replace(inputs, run=run_of(train__processes=2)))
    # 4 images dealt to 2 processes with batch 2: one synchronised step.
    assert len(history) == 1 and torch.isfinite(torch.tensor(history["total"].tolist())).all()
    assert set(state["generator"]) == set(inputs.generator_state)
    assert not all(torch.equal(state["generator"][k], v) for k, v in inputs.generator_state.items())


def test_stage2_learns_from_single_class_images_only_when_asked():
    names = ["x", "y", "z"]
    index = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"],
        "split": ["train", "train", "train", "val", "train"],
        "labels": [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]],
    })  # fmt: skip
    everything = run_of(train__prompt_images="all")
    only = run_of(train__prompt_images="single_class")
    assert stages.stage_images(index, everything, 2, names) is index
    for stage in (1, 3):
        assert stages.stage_images(index, only, stage, names) is index
    assert list(stages.stage_images(index, only, 2, names)["id"]) == ["a", "c", "d", "e"]
    with pytest.raises(ValueError, match=r"single_class leaves stage 2 no image labelled with "
                       r"only \['z'\] in splits \['train'\]; use prompt_images: all"):
        stages.stage_images(index.iloc[:4], only, 2, names)  # z only in val


def test_stage3_initial_weights_follow_the_switch():
    stage1 = {"initial_generator": {"w": torch.zeros(1)}, "generator": {"w": torch.ones(1)}}
    assert stages.stage3_initial_state(stage1, "stage1_initial")["w"].item() == 0
    assert stages.stage3_initial_state(stage1, "stage1_final")["w"].item() == 1
    with pytest.raises(ValueError, match="stage3_init must be one of"):
        stages.stage3_initial_state(stage1, "random")


def test_skipped_stages_of_each_configuration():
    def skipped(loss_ablation="all", background_prompts="learned"):
        run = run_of(train__loss_ablation=loss_ablation, background_prompts=background_prompts)
        return set(stages.skipped_stages(run))

    assert skipped() == set()
    assert skipped("none") == {1, 2, 3}
    assert skipped("match_only") == {2, 3}
    assert skipped(background_prompts="handwritten") == {2}
    assert skipped("refine_unlearned") == {2}
    assert skipped("no_refine") == {2}
    with pytest.raises(ValueError, match=r"train\.loss_ablation"):  # the schema's check
        skipped("nothing")


def test_handwritten_background_texts_in_class_order():
    run = run_of(background_prompts="handwritten")
    texts = stages.background_texts(run, ["boat", "cow"])
    assert texts == ["a photo of boat's background.", "a photo of cow's background."]
    assert stages.background_texts(run_of(), ["boat"]) is None
    with pytest.raises(ValueError, match=r"no text for classes \['bus'\]"):
        stages.background_texts(run, ["bus"])


def test_toy_clip_is_used_unless_real_weights_are_configured():
    clip = run_of().clip
    assert stages.uses_toy_clip(clip)
    assert not stages.uses_toy_clip(clip.model_copy(update={"weights": "/w.pt"}))
    assert not stages.uses_toy_clip(clip.model_copy(update={"name": "ViT-B-32"}))
    with pytest.raises(ValueError, match="the toy CLIP has no pretrained weights"):
        stages.frozen_clip(clip, {}, torch.device("cpu"))


def test_generator_options_and_weights_reach_the_generator():
    settings = run_of(generator__options={"output_stride": 8}).generator
    generator = stages.generator_module(settings, len(TOY_CLASSES))
    assert generator.output_stride == 8
    state = {k: torch.zeros_like(v) for k, v in generator.state_dict().items()}
    restored = stages.generator_module(settings, len(TOY_CLASSES), state)
    assert all(torch.equal(v, state[k]) for k, v in restored.state_dict().items())
