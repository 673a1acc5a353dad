"""Zero-shot accuracy counts the right answers, and the toy report uses held-out, valid scenes."""
# conftest.py imports semples (its compat shims) before open_clip is imported here.

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from semples.clip import TOY_CLIP
from semples.clip.zero_shot import (
    _context_only_scenes,
    _single_object_scenes,
    context_prompt,
    cutout_margins,
    object_prompt,
    open_clip_encoders,
    placed_object_scenes,
    toy_zero_shot_report,
    zero_shot_accuracy,
)
from semples.data.toy_world import (
    TOY_CLASSES,
    TOY_CONTEXTS,
    ToyWorldConfig,
    captioned_scene,
    render_captioned_scene,
)

PROMPTS = ["0", "1", "2"]


def _encode_images(images01: torch.Tensor) -> torch.Tensor:
    """An image of constant grey k / 4 'shows' class k."""
    classes = (images01.mean(dim=(1, 2, 3)) * 4).round().long()
    return F.one_hot(classes, len(PROMPTS)).float()


def _encode_texts(prompts) -> torch.Tensor:
    return F.one_hot(torch.tensor([int(p) for p in prompts]), len(PROMPTS)).float() * 3.0


def _grey_images(classes: list[int]) -> list[np.ndarray]:
    return [np.full((8, 8, 3), k / 4, np.float32) for k in classes]


def test_known_answers_score_one_and_zero():
    classes = [0, 1, 2, 2, 1, 0, 1]
    images = _grey_images(classes)
    wrong = [(k + 1) % 3 for k in classes]
    assert zero_shot_accuracy(_encode_images, _encode_texts, images, classes, PROMPTS) == 1.0
    assert zero_shot_accuracy(_encode_images, _encode_texts, images, wrong, PROMPTS) == 0.0


def test_batches_do_not_change_the_answer():
    classes = [0, 1, 2, 2, 1]
    targets = [0, 1, 2, 0, 0]
    scores = {
        zero_shot_accuracy(
            _encode_images, _encode_texts, _grey_images(classes), targets, PROMPTS, batch_size=size
        )
        for size in (1, 2, 256)
    }
    assert scores == {0.6}


def test_uint8_images_are_scaled_to_unit_range():
    images = [(image * 255).round().astype(np.uint8) for image in _grey_images([2, 1])]
    assert zero_shot_accuracy(_encode_images, _encode_texts, images, [2, 1], PROMPTS) == 1.0


@pytest.mark.parametrize(
    "images, targets, match",
    [
        (_grey_images([0, 1]), [0], "2 images but 1 targets"),
        ([], [], "at least one"),
        (_grey_images([0]), [3], "index the 3 prompts"),
    ],
)
def test_bad_inputs_are_rejected(images, targets, match):
    with pytest.raises(ValueError, match=match):
        zero_shot_accuracy(_encode_images, _encode_texts, images, targets, PROMPTS)


def test_prompts_follow_the_captions_grammar():
    world = ToyWorldConfig(max_objects=1, co_occurrence=0.0, context_only_fraction=0.0)
    captions = {render_captioned_scene(world, i)[1] for i in range(60)}
    assert captions == {object_prompt(name).removesuffix(".") for name in TOY_CLASSES}
    assert object_prompt("aeroplane") == "a photo of an aeroplane."
    contexts_only = ToyWorldConfig(context_only_fraction=1.0)
    captions = {render_captioned_scene(contexts_only, i)[1] for i in range(60)}
    assert captions == {context_prompt(c).removesuffix(".") for c in TOY_CONTEXTS.values()}


def test_held_out_scenes_are_valid_and_unseen():
    world = ToyWorldConfig(num_captioned=40)
    trained = {render_captioned_scene(world, i)[0].tobytes() for i in range(world.num_captioned)}
    images, labels = _single_object_scenes(world, 20)
    assert len(images) == 20 and set(labels) <= set(range(len(TOY_CLASSES)))
    assert not trained & {image.tobytes() for image in images}
    images, owners = _context_only_scenes(world, 20)
    assert not trained & {image.tobytes() for image in images}
    first = captioned_scene(ToyWorldConfig(num_captioned=40, context_only_fraction=1.0), 40)[0]
    assert first.labels == () and TOY_CONTEXTS[TOY_CLASSES[owners[0]]] == first.contexts[0]


def test_held_out_scenes_hold_one_object_whatever_the_worlds_object_counts():
    world = ToyWorldConfig(object_count_weights=(0.2, 0.3, 0.5))
    _, labels = _single_object_scenes(world, 10)
    assert len(labels) == 10
    assert {len(scene.labels) for scene in placed_object_scenes(world, 10)} == {1}


@pytest.mark.parametrize("context_read_as,object_margin,context_margin", [
    ("context", 1.0, 1.0),  # a CLIP that names what it sees
    ("object", 0.0, -1.0),  # the co-occurrence bias at its worst: a context is its object
])
def test_cutout_margins_of_known_readers(context_read_as, object_margin, context_margin):
    """Encoders that map each cut-out to one text exactly give the margins by hand."""
    world = ToyWorldConfig(num_captioned=10)
    count = len(TOY_CLASSES)
    prompts = [object_prompt(n) for n in TOY_CLASSES] + [
        context_prompt(TOY_CONTEXTS[n]) for n in TOY_CLASSES
    ]
    meaning = {}  # image bytes -> the prompt row this fake CLIP reads it as
    for scene in placed_object_scenes(world, 30):
        k = scene.labels[0]
        shift = len(TOY_CLASSES) if context_read_as == "context" else 0
        meaning[np.where(scene.mask[..., None] > 0, scene.image, 0).tobytes()] = k
        meaning[np.where(scene.context[..., None] > 0, scene.image, 0).tobytes()] = k + shift

    def encode_images(images01: torch.Tensor) -> torch.Tensor:
        arrays = (images01 * 255).round().byte().permute(0, 2, 3, 1).numpy()
        rows = torch.tensor([meaning[array.tobytes()] for array in arrays])
        return F.one_hot(rows, len(prompts)).float()

    def encode_texts(texts) -> torch.Tensor:
        return torch.eye(len(prompts))[[prompts.index(text) for text in texts]]

    margins = cutout_margins(encode_images, encode_texts, world, 30)
    assert len(margins) >= count - 1
    for entry in margins.values():
        assert entry["object_class_text"] == 1.0 and entry["object_context_text"] == 0.0
        assert entry["object_margin"] == object_margin
        assert entry["context_margin"] == context_margin


def test_report_on_an_open_clip_model():
    torch.manual_seed(0)
    model = open_clip.create_model(TOY_CLIP).eval()
    encoders = open_clip_encoders(model, open_clip.get_tokenizer(TOY_CLIP))
    report = toy_zero_shot_report(*encoders, ToyWorldConfig(num_captioned=10), num_images=12)
    assert set(report) == {
        "object_accuracy",
        "context_accuracy",
        "context_to_object_bias",
        "num_object_images",
        "num_context_images",
        "cutout_margins",
    }
    assert report["num_object_images"] == report["num_context_images"] == 12
    for entry in report["cutout_margins"].values():
        assert entry["object_margin"] == pytest.approx(
            entry["object_class_text"] - entry["context_class_text"], abs=1e-3
        )
        assert -1.0 <= entry["context_context_text"] <= 1.0
    for key in ("object_accuracy", "context_accuracy", "context_to_object_bias"):
        assert 0.0 <= report[key] <= 1.0
