import pytest

from semples.training.config import LOSS_ABLATIONS, StageConfig, stage_config


def test_effective_lr_scales_with_batch_like_the_reference_code():
    config = StageConfig(stage=1, lr=5e-4, batch_size=64, scale_lr_with_batch=True)
    assert config.effective_lr == pytest.approx(6.25e-5)
    assert StageConfig(stage=1, lr=5e-4, batch_size=64).effective_lr == 5e-4


@pytest.mark.parametrize(
    ("ablation", "expected"),
    [
        ("match_only", {"learn_prompts": False, "refine": False}),
        ("refine_unlearned", {"learn_prompts": False, "refine": True}),
        ("text_repel_only", {"prompt_image_term": False, "prompt_text_term": True}),
        ("image_align_only", {"prompt_image_term": True, "prompt_text_term": False}),
        ("all", {"learn_prompts": True, "refine": True, "prompt_image_term": True}),
        ("no_refine", {"learn_prompts": False, "refine": True, "lam": 0.0}),
    ],
)
def test_each_row_of_table_5_is_a_configuration(ablation, expected):
    config = stage_config(2, {"loss_ablation": ablation}, {"epochs": 2})
    assert {name: getattr(config, name) for name in expected} == expected
    assert set(LOSS_ABLATIONS) == {
        "match_only", "refine_unlearned", "text_repel_only", "image_align_only", "all",
        "no_refine",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage": 4}, "stage must be one of"),
        ({"stage": 1, "epochs": 0}, "epochs must be at least 1, got 0"),
        ({"stage": 1, "max_steps": 0}, "max_steps must be at least 1 or null"),
        ({"stage": 1, "text_term": "other"}, "text_term must be 'paper' or 'reference'"),
        ({"stage": 1, "similarity_floor": 0.0}, "similarity_floor must be in"),
        (
            {"stage": 2, "prompt_image_term": False, "prompt_text_term": False},
            "stage 2 needs at least one of",
        ),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StageConfig(**kwargs)


def test_unknown_ablation_is_named():
    with pytest.raises(ValueError, match="loss_ablation must be one of .* got 'nope'"):
        stage_config(1, {"loss_ablation": "nope"}, {})


def test_with_budget_takes_the_run_seed_and_cap_unless_the_cap_is_unset():
    from semples.training.cam_classifier import CamClassifierConfig
    from semples.training.config import with_budget

    settings = CamClassifierConfig(epochs=2, batch_size=4, lr=0.1, weight_decay=0.0, max_steps=9)
    capped = with_budget(settings, seed=7, max_steps=3)
    assert (capped.seed, capped.max_steps, capped.epochs) == (7, 3, 2)
    assert with_budget(settings, 7, None).max_steps == 9  # no cap: the config's own
