"""The stage loop on a few 48 px toy scenes with a random toy CLIP and the small generator."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from layouts import make_toy_index
from semples.clip import TOY_CLIP
from semples.clip.model import class_text_features, load_clip
from semples.clip.prompts import PromptLearner
from semples.data.images import LabelledImages
from semples.data.toy_world import TOY_CLASSES
from semples.models import build_mask_generator
from semples.training.config import StageConfig
from semples.training.loop import StageModels, train_stage


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> LabelledImages:
    index = make_toy_index(tmp_path_factory.mktemp("toy"), num_train=6, num_val=0)
    return LabelledImages(index, "train", seed=0)


def fresh_models(stage: int = 1) -> StageModels:
    """The same initial weights on every call (seeded)."""
    torch.manual_seed(0)
    clip = load_clip(TOY_CLIP)
    prompts = PromptLearner(
        clip, len(TOY_CLASSES), length=4, generator=torch.Generator().manual_seed(0)
    )
    models = StageModels(
        clip, build_mask_generator("small_fcn", len(TOY_CLASSES)), prompts,
        class_text_features(clip, TOY_CLASSES),
    )  # fmt: skip
    if stage == 3:
        with torch.no_grad():
            models.background_features = prompts()
    return models


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


CONFIG = StageConfig(stage=1, epochs=3, batch_size=4, lr=1e-3, area_weight=1.0)


def test_interrupted_run_resumes_to_the_uninterrupted_result(dataset, tmp_path):
    uninterrupted = fresh_models()
    full_history = train_stage(CONFIG, uninterrupted, dataset, progress=False)

    checkpoint = tmp_path / "stage1.pt"

    def crash_after_first_epoch(epoch: int) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_stage(CONFIG, fresh_models(), dataset, checkpoint, progress=False,
                    on_epoch_end=crash_after_first_epoch)  # fmt: skip
    assert checkpoint.is_file()
    resumed = fresh_models()
    resumed_history = train_stage(CONFIG, resumed, dataset, checkpoint, progress=False)

    assert states_equal(resumed.generator.state_dict(), uninterrupted.generator.state_dict())
    pd.testing.assert_frame_equal(resumed_history, full_history)
    assert full_history["step"].tolist() == list(range(1, 7))  # 6 images, batch 4: 2 steps/epoch


def test_same_seed_same_result(dataset):
    config = StageConfig(stage=1, epochs=1, batch_size=4, max_steps=1)
    first, second = fresh_models(), fresh_models()
    train_stage(config, first, dataset, progress=False)
    train_stage(config, second, dataset, progress=False)
    assert states_equal(first.generator.state_dict(), second.generator.state_dict())


def test_stage1_trains_the_generator_and_logs_every_term(dataset):
    models = fresh_models()
    before = {k: v.clone() for k, v in models.generator.state_dict().items()}
    history = train_stage(CONFIG, models, dataset, progress=False)
    assert {"total", "match_fg", "match_bg", "area"} <= set(history.columns)
    assert not states_equal(before, models.generator.state_dict())


def test_stage2_trains_only_the_prompts(dataset):
    models = fresh_models()
    generator_before = {k: v.clone() for k, v in models.generator.state_dict().items()}
    context_before = models.prompts.context.detach().clone()
    config = StageConfig(stage=2, epochs=1, batch_size=4, lr=1e-2)
    history = train_stage(config, models, dataset, progress=False)
    assert states_equal(generator_before, models.generator.state_dict())
    assert not torch.equal(context_before, models.prompts.context)
    assert "match_fg" not in history.columns and history["total"].notna().all()


def test_stage3_adds_the_refine_term(dataset):
    models = fresh_models(stage=3)
    config = StageConfig(stage=3, epochs=1, batch_size=4, lam=2.0)
    history = train_stage(config, models, dataset, progress=False)
    assert "refine" in history.columns
    assert (history["total"] > history["match_fg"]).all()


def test_similarity_floor_reaches_the_attracting_terms(dataset):
    """The configured floor changes what stages 1 and 2 optimise: the random toy CLIP's cosines
    lie near 0, below a floor of 0.5, where the tangent differs from the paper's clamped log."""
    for stage, term in ((1, "match_fg"), (2, "prompt_image")):
        config = StageConfig(stage=stage, epochs=1, batch_size=4, max_steps=1)
        floored = replace(config, similarity_floor=0.5)
        paper, ours = (
            train_stage(c, fresh_models(), dataset, progress=False)[term] for c in (config, floored)
        )
        assert not ours.equals(paper)


def test_head_only_training_leaves_the_trunk_and_its_statistics_alone(dataset):
    models = fresh_models()
    before = {k: v.clone() for k, v in models.generator.state_dict().items()}
    config = StageConfig(stage=1, epochs=1, batch_size=4, lr=1e-2, trainable="head")
    train_stage(config, models, dataset, progress=False)
    after = models.generator.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classifier.weight"}


def test_non_finite_loss_names_the_stage_and_step(dataset):
    models = fresh_models()
    models.label_features = torch.full_like(models.label_features, float("nan"))
    with pytest.raises(FloatingPointError, match="stage 1: non-finite loss at step 1"):
        train_stage(CONFIG, models, dataset, progress=False)
