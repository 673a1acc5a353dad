"""Tests of semples.clip.model: a frozen open_clip CLIP that lets gradients through to its inputs,
loading from open_clip's checkpoint format, and clear errors for wrong weights."""

import copy
import logging
import os

import open_clip
import pytest
import torch
import torch.nn.functional as F
from tolerances import FP32_NETWORK

from semples.clip import TOY_CLIP, FrozenClip, class_text_features, load_clip, save_clip_weights
from semples.clip.model import check_clip_weights, encode_text_embeddings, eot_positions

TEXTS = ["a photo of a boat.", "a photo of a cow on grass.", "sky"]


@pytest.fixture(scope="module")
def clip() -> FrozenClip:
    torch.manual_seed(0)
    return load_clip(TOY_CLIP)


@pytest.fixture(scope="module")
def vit_b32_weights(tmp_path_factory):
    """A randomly initialised ViT-B-32 in open_clip's checkpoint format (built once: 150 M
    parameters)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit_b32") / "vit_b32.pt"
    save_clip_weights(open_clip.create_model("ViT-B-32"), path)
    return path


def test_frozen_clip_has_no_trainable_parameter_and_stays_in_eval(clip):
    assert not any(parameter.requires_grad for parameter in clip.parameters())
    assert clip.train() is clip
    assert not any(module.training for module in clip.modules())


def test_frozen_clip_describes_the_model(clip):
    assert (clip.image_size, clip.embed_dim, clip.text_width, clip.context_length) == (
        96,
        128,
        128,
        77,
    )
    assert clip.state_dict().keys() == {f"model.{k}" for k in clip.model.state_dict()}


def test_encode_images_resizes_normalises_and_passes_gradients_to_the_images(clip):
    images = torch.rand(2, 3, 64, 48, requires_grad=True)
    features = clip.encode_images(images)
    assert features.shape == (2, clip.embed_dim) and features.dtype == torch.float32

    resized = F.interpolate(images, size=(96, 96), mode="bilinear", align_corners=False)
    cfg = open_clip.get_model_preprocess_cfg(clip.model)
    mean, std = torch.tensor(cfg["mean"])[:, None, None], torch.tensor(cfg["std"])[:, None, None]
    expected = clip.model.encode_image((resized - mean) / std)
    torch.testing.assert_close(features, expected)

    features.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in clip.parameters())


def test_encode_texts_equals_open_clip_encode_text(clip):
    features = clip.encode_texts(TEXTS)
    expected = clip.model.encode_text(clip.tokenizer(TEXTS))
    assert features.shape == (3, clip.embed_dim) and not features.requires_grad
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_class_text_features_fill_the_template(clip):
    features = class_text_features(clip, ["boat", "cow"], template="a photo of a {}.")
    torch.testing.assert_close(features, clip.encode_texts(TEXTS[:1] + ["a photo of a cow."]))


def test_class_text_features_put_the_article_the_toy_captions_use(clip):
    features = class_text_features(clip, ["aeroplane", "cow"], template="a photo of {article} {}.")
    expected = clip.encode_texts(["a photo of an aeroplane.", "a photo of a cow."])
    torch.testing.assert_close(features, expected)


def test_encode_token_embeddings_of_real_words_equals_encode_text(clip):
    tokens = clip.tokenizer(TEXTS)
    embeddings = clip.model.token_embedding(tokens).requires_grad_(True)
    features = clip.encode_token_embeddings(embeddings, tokens.argmax(dim=-1))
    torch.testing.assert_close(features, clip.model.encode_text(tokens), **FP32_NETWORK)

    features.sum().backward()
    assert embeddings.grad.abs().sum() > 0


def test_text_features_of_tokens_cut_after_the_longest_text_equal_encode_text(clip):
    # CLIP pretraining encodes its captions this way: the padding after EOT is cut off.
    model = clip.model
    tokens = clip.tokenizer(TEXTS + ["a photo of a cow and a train and a car on grass and rails"])
    cut = tokens[:, : int((tokens != 0).nonzero()[:, 1].max()) + 1]
    assert cut.shape[1] < tokens.shape[1]
    embeddings = model.token_embedding(cut)
    features = encode_text_embeddings(model, embeddings, eot_positions(model, cut))
    torch.testing.assert_close(features, model.encode_text(tokens), **FP32_NETWORK)


@pytest.mark.parametrize("pool_type", ["argmax", "eos"])
def test_eot_positions_find_the_eot_token(clip, pool_type):
    model = copy.deepcopy(clip.model)
    model.text_pool_type, model.text_eos_id = pool_type, clip.tokenizer.eot_token_id
    tokens = clip.tokenizer(TEXTS)
    positions = eot_positions(model, tokens)
    assert (tokens[torch.arange(len(TEXTS)), positions] == clip.tokenizer.eot_token_id).all()


def test_eot_positions_refuse_other_pool_types(clip):
    model = copy.deepcopy(clip.model)
    model.text_pool_type = "first"
    with pytest.raises(TypeError, match="'first'"):
        eot_positions(model, clip.tokenizer(TEXTS))


def test_encode_token_embeddings_checks_shapes(clip):
    with pytest.raises(ValueError, match="embeddings"):
        clip.encode_token_embeddings(torch.zeros(2, 10, 128), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="eot_positions"):
        clip.encode_token_embeddings(torch.zeros(2, 77, 128), torch.zeros(3, dtype=torch.long))


def test_a_weights_file_is_checked_once_per_version(clip, tmp_path, monkeypatch):
    # The schema checks clip.weights before the run and again for each report's parameters.
    from semples.clip import model as clip_model

    reads = []
    read_weights = clip_model._read_weights
    monkeypatch.setattr(clip_model, "_read_weights", lambda path: reads.append(path) or
                        read_weights(path))  # fmt: skip
    path = tmp_path / "toy.pt"
    save_clip_weights(clip, path)
    check_clip_weights(TOY_CLIP, path)
    check_clip_weights(TOY_CLIP, str(path))
    assert len(reads) == 1
    state = torch.load(path, weights_only=True)
    state[next(iter(state))] = torch.zeros(3, 1)
    torch.save(state, path)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # a new version, even on coarse clocks
    with pytest.raises(ValueError, match="does not hold weights of CLIP"):
        check_clip_weights(TOY_CLIP, path)
    with pytest.raises(ValueError, match="does not hold weights of CLIP"):
        check_clip_weights(TOY_CLIP, path)  # a failure is not remembered
    assert len(reads) == 3


def test_saved_weights_load_back_to_identical_features(clip, tmp_path):
    path = tmp_path / "nested" / "toy_clip.pt"
    save_clip_weights(clip, path)
    assert all(key == "state_dict" or not key.startswith("model.") for key in torch.load(path))
    torch.manual_seed(1)  # a different random init, overwritten by the file
    loaded = load_clip(TOY_CLIP, weights=path)
    images = torch.rand(2, 3, 96, 96)
    torch.testing.assert_close(
        loaded.encode_images(images), clip.encode_images(images), rtol=0, atol=0
    )
    torch.testing.assert_close(loaded.encode_texts(TEXTS), clip.encode_texts(TEXTS), rtol=0, atol=0)


def test_training_checkpoints_with_state_dict_and_module_prefix_load(clip, tmp_path):
    state = {f"module.{key}": value for key, value in clip.model.state_dict().items()}
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": state}, path)
    loaded = load_clip(TOY_CLIP, weights=path)
    torch.testing.assert_close(loaded.encode_texts(TEXTS), clip.encode_texts(TEXTS), rtol=0, atol=0)


def test_random_vit_b32_loads_from_a_weights_file(vit_b32_weights):
    clip = load_clip("ViT-B-32", weights=vit_b32_weights)
    assert (clip.image_size, clip.embed_dim, clip.text_width) == (224, 512, 512)
    with torch.no_grad():
        assert clip.encode_images(torch.rand(1, 3, 32, 32)).shape == (1, 512)


def test_weights_of_another_architecture_are_rejected_naming_the_file(vit_b32_weights):
    with pytest.raises(ValueError, match=f"{vit_b32_weights}.*{TOY_CLIP}.*shape"):
        load_clip(TOY_CLIP, weights=vit_b32_weights)


def test_missing_and_unexpected_keys_are_listed(clip, tmp_path):
    state = dict(clip.model.state_dict())
    del state["ln_final.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"ln_final\.weight \(missing\).*extra\.weight"):
        load_clip(TOY_CLIP, weights=path)


def test_a_file_without_a_state_dict_is_rejected(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="not a state dict"):
        load_clip(TOY_CLIP, weights=path)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.txt"):
        load_clip(TOY_CLIP, weights=text)


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_clip(TOY_CLIP, weights=path)


def test_an_in_memory_state_dict_loads(clip):
    torch.manual_seed(1)
    loaded = load_clip(TOY_CLIP, state_dict=clip.model.state_dict())
    torch.testing.assert_close(loaded.encode_texts(TEXTS), clip.encode_texts(TEXTS), rtol=0, atol=0)
    with pytest.raises(ValueError, match="the given state dict.*ln_final"):
        load_clip(TOY_CLIP, state_dict={"ln_final.weight": torch.zeros(3)})


def test_two_weight_sources_together_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="at most one.*pretrained.*weights"):
        load_clip("ViT-B-32", pretrained="openai", weights=tmp_path / "w.pt")
    with pytest.raises(ValueError, match="at most one"):
        load_clip(TOY_CLIP, weights=tmp_path / "w.pt", state_dict={})


def test_unknown_pretrained_tag_is_rejected_listing_the_known_ones():
    with pytest.raises(ValueError, match="no-such-tag.*openai"):
        load_clip("ViT-B-32", pretrained="no-such-tag")


def test_random_init_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="semples.clip.model"):
        load_clip(TOY_CLIP)
    assert "random init" in caplog.text


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="precision"):
        load_clip(TOY_CLIP, precision="fp8")


def test_custom_text_models_are_refused_with_the_reason():
    model = open_clip.create_model(TOY_CLIP, force_custom_text=True)
    with pytest.raises(TypeError, match="CustomTextCLIP.*not supported"):
        FrozenClip(model, TOY_CLIP)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_on_cuda_returns_float32_close_to_fp32(clip, precision, tmp_path):
    path = tmp_path / "toy.pt"
    save_clip_weights(clip, path)
    reference = load_clip(TOY_CLIP, weights=path, device="cuda")
    half = load_clip(TOY_CLIP, weights=path, device="cuda", precision=precision)
    images = torch.rand(2, 3, 96, 96, device="cuda", requires_grad=True)
    features = half.encode_images(images)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, reference.encode_images(images), rtol=0.05, atol=0.05)
    features.sum().backward()
    assert images.grad.abs().sum() > 0
    texts = half.encode_texts(TEXTS)
    assert texts.dtype == torch.float32
    torch.testing.assert_close(texts, reference.encode_texts(TEXTS), rtol=0.05, atol=0.05)
