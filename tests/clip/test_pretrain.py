"""Contrastive pretraining of the toy CLIP: deterministic, learns, fails loudly, augments sanely."""
# conftest.py imports semples (its compat shims) before open_clip is imported here.

import dataclasses

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from semples.clip import TOY_CLIP
from semples.clip.model import preprocess_images
from semples.clip.pretrain import (
    PretrainConfig,
    augment_batch,
    clip_loss,
    pretrain_clip,
)
from semples.data.toy_world import ToyWorldConfig, render_captioned_scene

# Without object cut-outs: on 32 scenes, 30 steps with cut-outs collapsed to uniform logits
# (loss ln 16) in one measurement, while the full default set trains well; this test checks the
# optimiser, not the data mix.
WORLD = ToyWorldConfig(num_captioned=32, object_cutout_fraction=0.0)
QUIET = PretrainConfig(batch_size=16, warmup_steps=2, dim_prob=0.0, occlusion_prob=0.0)


@pytest.fixture(scope="module")
def pairs() -> tuple[list[np.ndarray], list[str]]:
    images, captions = zip(*(render_captioned_scene(WORLD, i) for i in range(WORLD.num_captioned)))
    return list(images), list(captions)


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.get_tokenizer(TOY_CLIP)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(TOY_CLIP)


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", 1),
        ("lr", 0.0),
        ("weight_decay", -0.1),
        ("warmup_steps", -1),
        ("seed", -1),
        ("dim_prob", 1.5),
        ("occlusion_prob", -0.1),
        ("full_stop_prob", 2.0),
        ("max_steps", 0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        PretrainConfig(**{field: value})


def test_same_seed_gives_identical_weights(pairs, tokenizer):
    config = dataclasses.replace(QUIET, max_steps=3, dim_prob=0.5, occlusion_prob=0.5)
    states = []
    for _ in range(2):
        model = _model()
        pretrain_clip(model, tokenizer, *pairs, config, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])


def test_history_rows_and_lazy_images(pairs, tokenizer):
    images, captions = pairs
    loaders = [lambda image=image: image for image in images]
    config = dataclasses.replace(QUIET, epochs=3, max_steps=5)
    history = pretrain_clip(_model(), tokenizer, loaders, captions, config, progress=False)
    assert list(history.columns) == ["epoch", "step", "lr", "loss", "logit_scale"]
    assert history["step"].tolist() == list(range(1, 6))
    assert history["epoch"].tolist() == [0, 0, 1, 1, 2]
    assert history["lr"].iloc[0] == pytest.approx(QUIET.lr / 2)
    assert (history["logit_scale"] <= 100.0 + 1e-4).all()


def test_interrupted_run_resumes_to_the_uninterrupted_result(
    pairs, tokenizer, tmp_path, monkeypatch
):
    """Order, augmentation and full stops come from one generator: the checkpoint keeps it."""
    config = dataclasses.replace(QUIET, epochs=3, dim_prob=0.5, occlusion_prob=0.5)
    uninterrupted = _model()
    full = pretrain_clip(uninterrupted, tokenizer, *pairs, config, progress=False)

    calls = []

    def killed_in_the_second_epoch(*args):  # 32 pairs in batches of 16: 2 steps per epoch
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return augment_batch(*args)

    checkpoint = tmp_path / "clip.pt"
    with monkeypatch.context() as patch:
        patch.setattr("semples.clip.pretrain.augment_batch", killed_in_the_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            pretrain_clip(_model(), tokenizer, *pairs, config, False, checkpoint)
    assert checkpoint.is_file()
    resumed = _model(seed=1)
    history = pretrain_clip(resumed, tokenizer, *pairs, config, False, checkpoint)
    pd.testing.assert_frame_equal(history, full)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), uninterrupted.parameters()))


def test_loss_decreases(pairs, tokenizer):
    config = dataclasses.replace(QUIET, epochs=15, max_steps=30, warmup_steps=5)
    history = pretrain_clip(_model(), tokenizer, *pairs, config, progress=False)
    assert len(history) == 30
    assert history["loss"].iloc[-5:].mean() < 0.7 * history["loss"].iloc[:5].mean()


def test_diverging_loss_names_the_step(pairs, tokenizer):
    config = dataclasses.replace(QUIET, lr=1e6, warmup_steps=0, max_steps=10)
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        pretrain_clip(_model(), tokenizer, *pairs, config, progress=False)


def test_images_and_captions_must_pair_up(pairs, tokenizer):
    images, captions = pairs
    with pytest.raises(ValueError, match="32 images but 31 captions"):
        pretrain_clip(_model(), tokenizer, images, captions[:-1], QUIET, progress=False)


def test_augmentation_keeps_shape_and_range():
    images = torch.rand(64, 3, 24, 32)
    config = PretrainConfig(dim_prob=0.5, occlusion_prob=0.5)
    out = augment_batch(images, config, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_augmentation_off_is_identity():
    images = torch.rand(8, 3, 16, 16)
    config = PretrainConfig(dim_prob=0.0, occlusion_prob=0.0, hflip=False)
    assert torch.equal(augment_batch(images, config, torch.Generator()), images)


def test_flip_mirrors_whole_images():
    images = torch.rand(32, 3, 8, 8)
    config = PretrainConfig(dim_prob=0.0, occlusion_prob=0.0, hflip=True)
    out = augment_batch(images, config, torch.Generator().manual_seed(3))
    kept = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert (kept | mirrored).all() and kept.any() and mirrored.any()


def test_occlusion_blacks_out_a_tenth_to_two_fifths():
    config = PretrainConfig(dim_prob=0.0, occlusion_prob=1.0, hflip=False)
    out = augment_batch(torch.ones(200, 3, 40, 40), config, torch.Generator().manual_seed(1))
    black = (out == 0).all(dim=1).float().mean(dim=(1, 2))
    assert black.min() >= 0.08 and black.max() <= 0.42


def test_dimming_scales_by_a_fifth_to_four_fifths():
    config = PretrainConfig(dim_prob=1.0, occlusion_prob=0.0, hflip=False)
    out = augment_batch(torch.ones(200, 3, 8, 8), config, torch.Generator().manual_seed(2))
    assert out.min() >= 0.2 and out.max() <= 0.8
    assert torch.equal(out, out[:, :1, :1, :1].expand_as(out))


def test_preprocess_resizes_and_normalises():
    model = _model()
    out = preprocess_images(model, torch.ones(2, 3, 48, 64))
    assert out.shape == (2, 3, 96, 96)
    mean, std = (
        torch.tensor(v) for v in (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    )
    assert torch.allclose(out, ((1.0 - mean) / std)[None, :, None, None].expand_as(out), atol=1e-5)


def test_loss_matches_plain_infonce_with_repeated_captions(tokenizer):
    model = _model().eval()
    tokens = tokenizer(["a photo of water", "a photo of a boat", "a photo of water"])
    images = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        image_features = model.encode_image(images, normalize=True)
        logits = (
            model.logit_scale.exp() * image_features @ model.encode_text(tokens, normalize=True).T
        )
        labels = torch.arange(3)
        expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        assert clip_loss(model, images, tokens).item() == pytest.approx(expected.item(), abs=1e-5)
