"""The toy world is a pure function of (seed, split, index) and keeps its statistical promises."""

import dataclasses
import hashlib
import re
from collections import defaultdict

import numpy as np
import pytest

from semples.data.toy_world import (
    _TEXTURES,
    CAPTION_PREFIX,
    NOTHING,
    TOY_CLASSES,
    TOY_CONTEXTS,
    ToyWorldConfig,
    captioned_id,
    captioned_scene,
    render_captioned_scene,
    render_scene,
    scene_id,
    split_sizes,
)

CONFIG = ToyWorldConfig()


def _parse_caption(caption: str) -> tuple[list[str], list[str]]:
    """Object names and context names of a caption, articles dropped."""
    assert caption.startswith(CAPTION_PREFIX)
    body = caption[len(CAPTION_PREFIX) :]
    objects, _, contexts = body.partition(" on ")

    def words(text: str) -> list[str]:
        items = text.replace(" and ", ", ").split(", ") if text else []
        return [item.removeprefix("an ").removeprefix("a ") for item in items]

    return words(objects), words(contexts)


def _context_of(class_index: int) -> str:
    return TOY_CONTEXTS[TOY_CLASSES[class_index]]


def test_classes_and_contexts():
    assert TOY_CLASSES == ("aeroplane", "boat", "train", "cow", "car", "sheep")
    assert list(TOY_CONTEXTS) == list(TOY_CLASSES)
    assert len(set(TOY_CONTEXTS.values())) == len(TOY_CLASSES)


def test_same_id_gives_identical_bytes():
    first, second = render_scene(CONFIG, "train", 7), render_scene(CONFIG, "train", 7)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.mask.tobytes() == second.mask.tobytes()
    assert (first.labels, first.contexts) == (second.labels, second.contexts)
    assert render_captioned_scene(CONFIG, 7)[1] == render_captioned_scene(CONFIG, 7)[1]
    assert (
        render_captioned_scene(CONFIG, 7)[0].tobytes()
        == render_captioned_scene(CONFIG, 7)[0].tobytes()
    )


# sha256 of the scenes below as rendered before the context maps existed (commit 3ec532b): adding
# the maps must not change a byte of any image, mask or caption.
SCENES_BEFORE_CONTEXT_MAPS = "7ea0ac3d10d7d3ad4bd426d9b86c07ada7ce0448c29eafb2bd61a556621774c0"


def test_scenes_are_unchanged_by_the_context_maps():
    digest = hashlib.sha256()
    for config in (CONFIG, ToyWorldConfig(image_size=48, seed=3, co_occurrence=1.0)):
        for split, count in (("train", 12), ("val", 6)):
            for index in range(count):
                scene = render_scene(config, split, index)
                digest.update(scene.image.tobytes())
                digest.update(scene.mask.tobytes())
        for index in range(12):
            image, caption = render_captioned_scene(config, index)
            digest.update(image.tobytes())
            digest.update(caption.encode())
    assert digest.hexdigest() == SCENES_BEFORE_CONTEXT_MAPS


def test_rendering_order_does_not_matter():
    forward = [render_scene(CONFIG, "val", i).image.tobytes() for i in range(6)]
    backward = [render_scene(CONFIG, "val", i).image.tobytes() for i in reversed(range(6))]
    assert forward == backward[::-1]


def test_different_ids_give_different_scenes():
    reference = render_scene(CONFIG, "train", 3).image.tobytes()
    others = [
        render_scene(CONFIG, "train", 4),
        render_scene(CONFIG, "val", 3),
        render_scene(dataclasses.replace(CONFIG, seed=1), "train", 3),
    ]
    assert all(other.image.tobytes() != reference for other in others)
    assert render_captioned_scene(CONFIG, 3)[0].tobytes() != reference


@pytest.mark.parametrize("size", [32, 96, 128])
def test_shapes_and_dtypes(size):
    scene = render_scene(dataclasses.replace(CONFIG, image_size=size), "train", 0)
    assert scene.image.shape == (size, size, 3) and scene.image.dtype == np.uint8
    assert scene.mask.shape == (size, size) and scene.mask.dtype == np.uint8
    image, caption = render_captioned_scene(dataclasses.replace(CONFIG, image_size=size), 0)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert isinstance(caption, str)


@pytest.mark.parametrize(
    "size,min_objects,max_objects", [(96, 1, 3), (96, 3, 3), (96, 1, 6), (60, 6, 6), (32, 3, 3)]
)
def test_labels_are_the_classes_in_the_mask(size, min_objects, max_objects):
    config = ToyWorldConfig(image_size=size, min_objects=min_objects, max_objects=max_objects)
    for index in range(40):
        scene = render_scene(config, "train", index)
        assert scene.mask.max() <= len(TOY_CLASSES)
        present = tuple(int(v) - 1 for v in np.unique(scene.mask) if v > 0)
        assert scene.labels == present
        assert min_objects <= len(scene.labels) <= max_objects


def test_object_count_weights_set_how_many_objects_a_scene_has():
    weighted = dataclasses.replace(CONFIG, object_count_weights=[0.6, 0.3, 0.1])
    assert weighted.object_count_weights == (0.6, 0.3, 0.1)  # a YAML list becomes a tuple
    counts = np.bincount([len(render_scene(weighted, "train", i).labels) for i in range(600)])
    # 600 draws: each share within 4 standard deviations of its weight
    assert np.allclose(counts[1:] / 600, [0.6, 0.3, 0.1], atol=4 * np.sqrt(0.25 / 600))
    only_two = dataclasses.replace(CONFIG, object_count_weights=(0, 1, 0))
    assert {len(render_scene(only_two, "val", i).labels) for i in range(30)} == {2}


def test_every_object_gets_its_context_at_full_co_occurrence():
    config = dataclasses.replace(CONFIG, co_occurrence=1.0)
    for index in range(30):
        scene = render_scene(config, "train", index)
        assert sorted(scene.contexts) == sorted(_context_of(k) for k in scene.labels)


def test_no_context_at_zero_co_occurrence():
    config = dataclasses.replace(CONFIG, co_occurrence=0.0)
    assert all(render_scene(config, "train", i).contexts == () for i in range(30))


def test_context_map_marks_drawn_contexts_and_never_an_object_pixel():
    config = dataclasses.replace(CONFIG, max_objects=6, image_size=96)
    for index in range(40):
        scene = render_scene(config, "train", index)
        assert scene.context.shape == scene.mask.shape and scene.context.dtype == np.uint8
        assert not (scene.context[scene.mask > 0]).any()
        owners = {TOY_CLASSES[int(k) - 1] for k in np.unique(scene.context) if k}
        assert {TOY_CONTEXTS[name] for name in owners} <= set(scene.contexts)


def test_context_map_shows_where_the_context_was_painted():
    config = dataclasses.replace(CONFIG, co_occurrence=1.0)
    aeroplane = TOY_CLASSES.index("aeroplane")
    scenes = [render_scene(config, "val", i) for i in range(20)]
    for scene in scenes:
        assert {int(k) - 1 for k in np.unique(scene.context) if k} == set(scene.labels)
    with_sky = [scene for scene in scenes if aeroplane in scene.labels]
    assert with_sky
    for scene in with_sky:  # the pixels marked as the aeroplane's context are sky: blue
        sky = scene.image[scene.context == aeroplane + 1].astype(int)
        assert (sky[:, 2] > sky[:, 0] + 20).all()


def test_context_map_is_empty_without_contexts():
    config = dataclasses.replace(CONFIG, co_occurrence=0.0)
    assert all(not render_scene(config, "train", i).context.any() for i in range(20))


def test_captioned_context_maps():
    only = dataclasses.replace(CONFIG, context_only_fraction=1.0)
    scene, _ = captioned_scene(only, 0)
    (owner,) = [name for name, context in TOY_CONTEXTS.items() if context == scene.contexts[0]]
    assert set(np.unique(scene.context)) == {0, TOY_CLASSES.index(owner) + 1}
    cutouts = dataclasses.replace(
        CONFIG, co_occurrence=1.0, context_only_fraction=0.0, object_cutout_fraction=1.0
    )
    assert not captioned_scene(cutouts, 0)[0].context.any()


def test_drawn_contexts_belong_to_drawn_objects():
    for index in range(30):
        scene = render_scene(CONFIG, "train", index)
        assert set(scene.contexts) <= {_context_of(k) for k in scene.labels}
        assert len(set(scene.contexts)) == len(scene.contexts)


def test_co_occurrence_rate_is_about_the_configured_probability():
    scenes = [render_scene(CONFIG, "train", i) for i in range(300)]
    objects = sum(len(scene.labels) for scene in scenes)
    with_context = sum(len(scene.contexts) for scene in scenes)
    assert with_context / objects == pytest.approx(0.8, abs=0.05)


def test_captions_name_exactly_the_drawn_objects_and_contexts():
    seen_context_only = seen_objects = 0
    for index in range(60):
        scene, caption = captioned_scene(CONFIG, index)
        if scene.labels:
            seen_objects += 1
            objects, contexts = _parse_caption(caption)
            assert sorted(TOY_CLASSES.index(name) for name in objects) == list(scene.labels)
            assert contexts in ([], list(scene.contexts))
        else:
            seen_context_only += 1
            assert scene.mask.max() == 0 and len(scene.contexts) == 1
            assert caption == CAPTION_PREFIX + scene.contexts[0]
    assert seen_context_only and seen_objects


def test_caption_grammar():
    config = dataclasses.replace(
        CONFIG,
        co_occurrence=1.0,
        object_only_caption=0.0,
        context_only_fraction=0.0,
        object_cutout_fraction=0.0,
    )
    name = r"an? \w+"
    forms = {
        1: rf"a photo of {name} on \w+",
        2: rf"a photo of {name} and {name} on \w+ and \w+",
        3: rf"a photo of {name}, {name} and {name} on \w+, \w+ and \w+",
    }
    for index in range(40):
        scene, caption = captioned_scene(config, index)
        assert re.fullmatch(forms[len(scene.labels)], caption), caption
        assert "aeroplane" not in caption or "an aeroplane" in caption
        assert " a aeroplane" not in caption and " an boat" not in caption


def test_object_only_caption_drops_the_contexts():
    config = dataclasses.replace(
        CONFIG,
        co_occurrence=1.0,
        object_only_caption=1.0,
        context_only_fraction=0.0,
        object_cutout_fraction=0.0,
    )
    for index in range(20):
        scene, caption = captioned_scene(config, index)
        assert scene.contexts and " on " not in caption


def test_object_cutouts_show_the_objects_alone_on_black():
    config = dataclasses.replace(
        CONFIG, co_occurrence=1.0, context_only_fraction=0.0, object_cutout_fraction=1.0
    )
    for index in range(20):
        scene, caption = captioned_scene(config, index)
        objects, contexts = _parse_caption(caption)
        assert objects == [TOY_CLASSES[k] for k in _slot_order(scene)] and contexts == []
        assert scene.contexts == () and (scene.image[scene.mask == 0] == 0).all()
        assert scene.image[scene.mask > 0].any()


def test_context_cutouts_show_the_contexts_alone_on_black_named_as_contexts():
    """A context cut-out keeps exactly the context pixels (holes where objects stood) and names
    the contexts it shows, never an object; a scene without context is left as it was."""
    plain = dataclasses.replace(CONFIG, context_only_fraction=0.0, object_cutout_fraction=0.0)
    cutouts = dataclasses.replace(plain, context_cutout_fraction=1.0)
    seen = 0
    for index in range(30):
        original, original_caption = captioned_scene(plain, index)
        scene, caption = captioned_scene(cutouts, index)
        if not original.contexts:
            assert caption == original_caption and (scene.image == original.image).all()
            continue
        seen += 1
        objects, contexts = _parse_caption(caption)
        assert scene.labels == () and contexts == []
        shown = {_context_of(k - 1) for k in np.unique(original.context) if k}
        assert set(objects) == shown and set(objects) <= set(original.contexts)
        keep = original.context > 0
        assert (scene.image[keep] == original.image[keep]).all()
        assert (scene.image[~keep] == 0).all() and (scene.image[original.mask > 0] == 0).all()
    assert seen >= 15


def test_context_fill_grows_each_context_over_its_slot():
    """At context_fill 1 a context is the object's whole background in its column, as in a
    photo: ground contexts and sky span every row, rails run from the wheels to the bottom; the
    contexts of fill 0 stay where they were (only grown)."""
    lone = dataclasses.replace(CONFIG, co_occurrence=1.0, min_objects=1, max_objects=1)
    filled = dataclasses.replace(lone, context_fill=1.0)
    for index in range(24):
        before, after = render_scene(lone, "train", index), render_scene(filled, "train", index)
        (k,) = after.labels
        rows, cols = np.nonzero(after.mask)
        middle = int(np.median(cols))
        column = (after.context[:, middle] > 0) | (after.mask[:, middle] > 0)
        if TOY_CONTEXTS[TOY_CLASSES[k]] == "rails":
            assert column[rows.max() :].all() and not column[: rows.min()].any()
        else:
            assert column.all()
        objects = (before.mask > 0) | (after.mask > 0)
        assert ((after.context > 0) | objects)[(before.context > 0)].all()
        assert (after.context > 0).sum() >= (before.context > 0).sum()


@pytest.mark.parametrize(
    ("base", "palette", "repainted"),
    [
        ("pale", "contrasting", {0, 5}),
        ("pale", "distinct", {0, 3, 4, 5}),
        ("contrasting", "distinct", {0, 3, 4}),
    ],
)
def test_palettes_repaint_only_their_objects(base, palette, repainted):
    """Same layouts, masks, labels and contexts as the ``base`` palette's world; only the
    objects of 0-based classes ``repainted`` change pixels."""
    world = dataclasses.replace(CONFIG, co_occurrence=1.0, context_fill=1.0)
    changed_classes = set()
    for index in range(40):
        before = render_scene(dataclasses.replace(world, palette=base), "train", index)
        after = render_scene(dataclasses.replace(world, palette=palette), "train", index)
        assert (before.mask == after.mask).all() and (before.context == after.context).all()
        assert (before.labels, before.contexts) == (after.labels, after.contexts)
        changed = (before.image != after.image).any(axis=2)
        changed_classes |= {int(k) - 1 for k in np.unique(before.mask[changed])}
    assert changed_classes == repainted


def _object_colours(palette: str, scenes: int = 40) -> tuple[dict, dict]:
    """Per class: the object's pixels and the mean colour of its context, over train scenes."""
    world = dataclasses.replace(CONFIG, co_occurrence=1.0, context_fill=1.0, palette=palette)
    objects, contexts = defaultdict(list), defaultdict(list)
    for index in range(scenes):
        scene = render_scene(world, "train", index)
        for k in scene.labels:
            objects[k].append(scene.image[scene.mask == k + 1].astype(float))
            contexts[k].append(scene.image[scene.context == k + 1].astype(float))
    pixels = {k: np.concatenate(v) for k, v in objects.items()}
    return pixels, {k: np.concatenate(v).mean(axis=0) for k, v in contexts.items()}


def test_contrasting_palette_sets_aeroplane_and_sheep_off_from_their_contexts():
    """The pale aeroplane and sheep sit close to their sky and snow in mean colour."""
    distance = {}
    for palette in ("pale", "contrasting"):
        pixels, context = _object_colours(palette)
        distance[palette] = {
            k: float(np.linalg.norm(pixels[k].mean(axis=0) - context[k])) for k in (0, 5)
        }
    for k in (0, 5):
        assert distance["contrasting"][k] > distance["pale"][k] + 10


def test_distinct_palette_paints_no_object_in_a_context_colour():
    """Under "distinct" few pixels of the aeroplane, the cow or the car are within 50 (RGB) of
    any context's mean colour, so a thin ring of a context on black does not look like one of
    them; under "contrasting" about half are (white cow and fuselage as snow, blue car as
    water). Measured: 0.53 / 0.48 / 0.42 against 0.12 / 0.07 / 0.20."""

    def context_coloured_share(palette: str) -> dict[int, float]:
        pixels, context = _object_colours(palette)
        means = np.stack(list(context.values()))
        return {
            k: float((np.linalg.norm(pixels[k][:, None] - means, axis=2).min(axis=1) < 50).mean())
            for k in (0, 3, 4)
        }

    before, after = context_coloured_share("contrasting"), context_coloured_share("distinct")
    for k in (0, 3, 4):
        assert after[k] < 0.25 and after[k] < before[k] - 0.2, (TOY_CLASSES[k], before, after)


def test_masked_views_name_what_stays_visible():
    """A masked view darkens its scene through a soft mask; its caption names an object when
    at least half of it shows: never a blacked-out one, always an untouched one."""
    plain = dataclasses.replace(CONFIG, context_only_fraction=0.0, object_cutout_fraction=0.0)
    masked = dataclasses.replace(plain, masked_view_fraction=1.0)
    captions = []
    for index in range(60):
        original, _ = captioned_scene(plain, index)
        scene, caption = captioned_scene(masked, index)
        assert (scene.image <= original.image).all() and (scene.image < original.image).any()
        assert (scene.mask == original.mask).all() and set(scene.labels) <= set(original.labels)
        captions.append(caption)
        objects, _ = _parse_caption(caption)
        if not scene.labels:  # the visible contexts alone, or nothing
            assert objects == (list(scene.contexts) or [NOTHING])
            continue
        assert sorted(TOY_CLASSES.index(name) for name in objects) == list(scene.labels)
        for k in original.labels:
            pixels = original.mask == k + 1
            shown = scene.image[pixels].sum() / max(original.image[pixels].sum(), 1)
            if shown > 0.95:
                assert k in scene.labels, (index, caption)
            if shown < 0.05:
                assert k not in scene.labels, (index, caption)
    assert CAPTION_PREFIX + NOTHING in captions
    assert any(c.removeprefix(CAPTION_PREFIX) in TOY_CONTEXTS.values() for c in captions)


def test_no_masked_views_by_default():
    scene, _ = captioned_scene(
        dataclasses.replace(CONFIG, context_only_fraction=0.0, object_cutout_fraction=0.0), 3
    )
    assert (scene.image[scene.mask > 0] > 0).any(axis=-1).all()


def _slot_order(scene) -> list[int]:
    """Classes of a scene left to right (captions name them in slot order)."""
    columns = {k: np.nonzero((scene.mask == k + 1).any(axis=0))[0].min() for k in scene.labels}
    return sorted(columns, key=columns.get)


def test_context_only_fraction_bounds():
    only = dataclasses.replace(CONFIG, context_only_fraction=1.0)
    never = dataclasses.replace(CONFIG, context_only_fraction=0.0)
    assert all(captioned_scene(only, i)[0].labels == () for i in range(20))
    assert all(captioned_scene(never, i)[0].labels != () for i in range(20))


def test_render_captioned_scene_is_captioned_scene_without_ground_truth():
    scene, caption = captioned_scene(CONFIG, 5)
    image, same_caption = render_captioned_scene(CONFIG, 5)
    assert image.tobytes() == scene.image.tobytes() and caption == same_caption


def test_contexts_are_bright_and_textured():
    """A dark or flat context would look like the dimmed, masked images SemPLES shows CLIP."""
    rng = np.random.default_rng(0)
    for context, texture in _TEXTURES.items():
        patch = texture(rng, 30, 60)
        assert patch.shape == (30, 60, 3)
        assert patch.mean() > 90 and patch.mean(axis=2).std() > 5, context


def test_ids_and_split_sizes():
    assert scene_id("train", 42) == "train_000042"
    assert captioned_id(42) == "cap_000042"
    assert split_sizes(ToyWorldConfig(num_train=5, num_val=2)) == {"train": 5, "val": 2}


def test_negative_index_is_rejected():
    with pytest.raises(ValueError, match="index must be >= 0, got -1"):
        render_scene(CONFIG, "train", -1)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"image_size": 16}, "image_size must be >= 32, got 16"),
        ({"num_train": -1}, "num_train must be >= 0, got -1"),
        ({"num_val": -2}, "num_val must be >= 0, got -2"),
        ({"num_captioned": -3}, "num_captioned must be >= 0, got -3"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"co_occurrence": 1.5}, r"co_occurrence must be in \[0, 1\], got 1.5"),
        ({"context_only_fraction": -0.1}, r"context_only_fraction must be in \[0, 1\]"),
        ({"object_only_caption": float("nan")}, r"object_only_caption must be in \[0, 1\]"),
        ({"masked_view_fraction": 1.2}, r"masked_view_fraction must be in \[0, 1\], got 1.2"),
        ({"context_cutout_fraction": -1}, r"context_cutout_fraction must be in \[0, 1\], got -1"),
        ({"context_fill": 1.5}, r"context_fill must be in \[0, 1\], got 1.5"),
        ({"palette": "vivid"}, r"palette must be one of \[.*'distinct'\], got 'vivid'"),
        ({"min_objects": 0}, "min_objects=0, max_objects=3"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects=3, max_objects=2"),
        ({"max_objects": 7}, "min_objects=1, max_objects=7"),
        ({"image_size": 40, "max_objects": 5}, "image_size=40 is too small for max_objects=5"),
        ({"object_count_weights": (0.5, 0.5)}, r"3 non-negative weights .* got \[0.5, 0.5\]"),
        ({"object_count_weights": (1, -1, 1)}, r"object count 1..3\) .* got \[1, -1, 1\]"),
        ({"object_count_weights": (0, 0, 0)}, "positive finite sum"),
        ({"object_count_weights": (1, float("nan"), 1)}, "positive finite sum"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        ToyWorldConfig(**overrides)
