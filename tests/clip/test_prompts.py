"""Tests of semples.clip.prompts. The acceptance test: context vectors set to the embeddings of
real words give exactly CLIP's feature of the sentence made of those words."""

import pytest
import torch
from tolerances import FP32_NETWORK

from semples.clip import TOY_CLIP, FrozenClip, PromptLearner, load_clip
from semples.clip.prompts import prompt_token_ids

WORDS = "calm blue water under a clear sky"
LENGTH = 7  # the words of WORDS, one BPE token each


@pytest.fixture(scope="module")
def clip() -> FrozenClip:
    torch.manual_seed(0)
    return load_clip(TOY_CLIP)


def word_embeddings(clip: FrozenClip, text: str, length: int) -> torch.Tensor:
    """Token embeddings [length, width] of the first ``length`` tokens of ``text``."""
    ids = clip.tokenizer([text])[0]
    words = ids[1 : 1 + length]
    assert clip.tokenizer.eot_token_id not in words.tolist(), "text has too few tokens"
    with torch.no_grad():
        return clip.model.token_embedding(words)


def test_prompt_of_real_word_embeddings_equals_encode_text_of_the_sentence(clip):
    learner = PromptLearner(clip, num_prompts=2, length=LENGTH)
    other = word_embeddings(clip, "a dark road at night with tall grey buildings", LENGTH)
    learner.set_context(torch.stack([word_embeddings(clip, WORDS, LENGTH), other]))

    features = learner()
    sentences = [f"a photo of {WORDS}.", "a photo of a dark road at night with tall."]
    expected = clip.model.encode_text(clip.tokenizer(sentences))
    assert features.shape == (2, clip.embed_dim) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected, **FP32_NETWORK)


def test_prompt_token_ids_match_the_tokenized_sentence_outside_the_placeholders(clip):
    ids, start, eot = prompt_token_ids(clip, LENGTH, "a photo of", ".")
    sentence = clip.tokenizer([f"a photo of {WORDS}."])[0]
    placeholders = slice(start, start + LENGTH)
    assert (start, eot) == (4, 4 + LENGTH + 1)
    assert ids[eot] == clip.tokenizer.eot_token_id and int(sentence.argmax()) == eot
    ids[placeholders] = sentence[placeholders]
    assert torch.equal(ids, sentence)


def test_gradients_reach_only_the_context(clip):
    learner = PromptLearner(
        clip, num_prompts=3, length=5, generator=torch.Generator().manual_seed(0)
    )
    learner().square().sum().backward()
    assert learner.context.grad is not None and learner.context.grad.abs().sum() > 0
    for parameter in clip.parameters():
        assert not parameter.requires_grad and parameter.grad is None
    assert [name for name, _ in learner.named_parameters()] == ["context"]


def test_default_prompt_has_30_context_vectors_and_fits_the_context_length(clip):
    learner = PromptLearner(clip, num_prompts=4)
    assert learner.context.shape == (4, 30, clip.text_width)
    assert 0.0 <= learner.context.min() and learner.context.max() < 1.0
    assert int(learner.eot_position) == 1 + 3 + 30 + 1 < clip.context_length
    assert learner.head.shape[0] + 30 + learner.tail.shape[0] == clip.context_length


def test_a_prompt_longer_than_the_context_length_is_rejected(clip):
    with pytest.raises(ValueError, match="does not fit"):
        PromptLearner(clip, num_prompts=1, length=72)
    assert PromptLearner(clip, num_prompts=1, length=71).eot_position == 76


def test_a_seeded_generator_makes_the_initial_prompts_reproducible(clip):
    def make(seed: int) -> torch.Tensor:
        return PromptLearner(clip, 2, generator=torch.Generator().manual_seed(seed)).context

    assert torch.equal(make(7), make(7))
    assert not torch.equal(make(7), make(8))


def test_state_dict_holds_only_the_context_and_restores_the_prompts(clip):
    learner = PromptLearner(clip, 3, length=4, generator=torch.Generator().manual_seed(1))
    assert list(learner.state_dict()) == ["context"]
    restored = PromptLearner(clip, 3, length=4, generator=torch.Generator().manual_seed(2))
    restored.load_state_dict(learner.state_dict())
    torch.testing.assert_close(restored(), learner(), rtol=0, atol=0)


def test_selected_prompts_equal_the_rows_of_all_prompts(clip):
    learner = PromptLearner(clip, 4, length=6, generator=torch.Generator().manual_seed(3))
    indices = torch.tensor([2, 0, 2])
    torch.testing.assert_close(learner(indices), learner()[indices], **FP32_NETWORK)


def test_set_context_checks_the_shape(clip):
    learner = PromptLearner(clip, 2, length=5)
    with pytest.raises(ValueError, match="context must be"):
        learner.set_context(torch.zeros(2, 6, clip.text_width))


def test_invalid_sizes_are_rejected(clip):
    with pytest.raises(ValueError, match="num_prompts"):
        PromptLearner(clip, 0)
