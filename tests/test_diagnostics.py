"""The objective diagnostic scores every term on chosen masks, consistently with the losses."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from semples.clip import TOY_CLIP
from semples.clip.model import class_text_features, load_clip
from semples.data.images import to_tensor
from semples.data.toy_world import TOY_CLASSES, ToyWorldConfig, render_scene
from semples.diagnostics import (
    GROUND_TRUTH_VARIANTS,
    Pair,
    mask_gradients_by_region,
    mask_mass_by_region,
    objective_table,
    probe_features,
    prompt_fit,
    prompt_similarities,
    ring_similarities,
    similarity_by_growth,
    stage2_fitted_targets,
    stage2_target_charges,
    stage2_view_by_object_count,
)
from semples.losses import match_loss, refine_loss


def random_clip_and_pairs(scenes: int):
    """A randomly initialised toy CLIP (seed 0) and the positive pairs of ``scenes`` val scenes
    of a small toy world in which every object stands on its context."""
    torch.manual_seed(0)
    clip = load_clip(TOY_CLIP)
    world = ToyWorldConfig(image_size=64, co_occurrence=1.0)
    pairs = [
        Pair(to_tensor(scene.image), k, scene.mask == k + 1, scene.context == k + 1)
        for scene in (render_scene(world, "val", i) for i in range(scenes))
        for k in scene.labels
    ]
    return clip, pairs


@pytest.fixture(scope="module")
def table():
    clip, pairs = random_clip_and_pairs(4)
    labels = class_text_features(clip, TOY_CLASSES)
    background = clip.encode_texts([f"a photo of {c}." for c in ("sky", "water") * 3])
    generator = {"blank masks": torch.zeros(len(pairs), 64, 64)}
    return objective_table(
        clip, pairs, labels, background, generator, lambda_b=2.0, area_weight=3.0, lam=0.5,
        batch_size=3,
    )  # fmt: skip


def test_the_similarity_floor_reaches_the_foreground_term(table):
    """The random CLIP's cosines lie near 0: under a floor of 0.5 match_fg follows the tangent,
    not the clamped log, wherever the cosine is below the floor; match_bg is unchanged."""
    clip, pairs = random_clip_and_pairs(4)
    floored = objective_table(
        clip, pairs, class_text_features(clip, TOY_CLASSES),
        clip.encode_texts([f"a photo of {c}." for c in ("sky", "water") * 3]),
        {"blank masks": torch.zeros(len(pairs), 64, 64)}, lambda_b=2.0, area_weight=3.0, lam=0.5,
        similarity_floor=0.5, batch_size=3,
    )  # fmt: skip
    np.testing.assert_allclose(floored["match_bg"], table["match_bg"], rtol=1e-5)
    assert (floored["match_fg"] != table["match_fg"]).any()


def test_one_row_per_variant_and_generator(table):
    assert list(table.index) == [*GROUND_TRUTH_VARIANTS, "blank masks"]


def test_totals_are_the_weighted_sums_of_the_terms(table):
    np.testing.assert_allclose(table["L_match"], table["match_fg"] + 2.0 * table["match_bg"],
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(table["+ area"], table["L_match"] + 3.0 * table["mean area"],
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(table["total"], table["+ area"] + 0.5 * table["L_refine"],
                               rtol=1e-5)  # fmt: skip


def test_masks_are_what_their_names_say(table):
    assert table.loc["ground truth", "soft IoU with GT"] == pytest.approx(1.0)
    assert table.loc["whole image", "mean area"] == pytest.approx(1.0)
    assert table.loc["blank masks", "mean area"] == 0.0
    areas = table.loc[["GT eroded 2 px", "ground truth", "GT dilated 4 px", "GT dilated 12 px"],
                      "mean area"]  # fmt: skip
    assert (np.diff(areas.to_numpy()) > 0).all()
    assert table.loc["GT + its context", "mean area"] > table.loc["ground truth", "mean area"]
    faint = table.loc["GT + its context at 0.2", "mean area"]
    truth, with_context = table.loc[["ground truth", "GT + its context"], "mean area"]
    expected = truth + 0.2 * (with_context - truth)
    assert faint == pytest.approx(expected, rel=1e-5)
    assert table.loc["context alone", "soft IoU with GT"] == 0.0
    assert table.loc["nothing (empty mask)", "mean area"] == 0.0
    moved = table.loc["GT shape moved by half the image"]
    assert moved["mean area"] == pytest.approx(table.loc["ground truth", "mean area"])
    assert moved["soft IoU with GT"] < 0.5


def test_prompt_similarities_find_a_prompt_that_is_its_context():
    """A prompt equal to CLIP's feature of its class's context alone scores cosine 1 there and
    less on the object: the table says the prompt would pull masks off the context."""
    torch.manual_seed(0)
    clip = load_clip(TOY_CLIP)
    world = ToyWorldConfig(image_size=64, co_occurrence=1.0)
    first = {}
    for scene in (render_scene(world, "val", i) for i in range(12)):
        for k in scene.labels:
            first.setdefault(k, Pair(to_tensor(scene.image), k, scene.mask == k + 1,
                                     scene.context == k + 1))  # fmt: skip
    pairs = [first[k] for k in sorted(first)]
    contexts = torch.stack([p.image * torch.from_numpy(p.context_mask).float() for p in pairs])
    prompts = torch.zeros(len(TOY_CLASSES), clip.encode_texts(["x"]).shape[-1])
    prompts[[p.class_index for p in pairs]] = clip.encode_images(contexts).detach()
    table = prompt_similarities(clip, pairs, prompts, TOY_CLASSES)
    assert list(table.index) == [TOY_CLASSES[p.class_index] for p in pairs]
    np.testing.assert_allclose(table["context alone"], 1.0, atol=1e-4)
    assert (table["context - object"] > 0).all()
    no_context = [Pair(p.image, p.class_index, p.object_mask, None) for p in pairs]
    with pytest.raises(ValueError, match="non-empty context mask"):
        prompt_similarities(clip, no_context, prompts, TOY_CLASSES)


def test_stage2_target_charges_are_what_the_best_prompt_would_charge():
    """The charge against the raw target is prompt_similarities' (object + context) - (object)
    for a prompt equal to the mean view of the image minus the object; removing a class text
    that is orthogonal to every view changes nothing."""
    clip, pairs = random_clip_and_pairs(6)
    views = probe_features(clip, pairs)
    classes = torch.tensor([p.class_index for p in pairs])
    dim = views["object alone"].shape[-1]
    targets = torch.zeros(len(TOY_CLASSES), dim)
    for k in classes.unique():
        targets[k] = torch.nn.functional.normalize(
            views["image minus object (stage 2's target)"][classes == k].mean(0), dim=0
        )
    # A text orthogonal to every view of every pair (4 x 9 views span < 128 dimensions): the
    # text term removes nothing.
    stacked = torch.cat(list(views.values()))
    basis = torch.linalg.svd(stacked, full_matrices=True).Vh
    orthogonal_text = basis[-1].expand(len(TOY_CLASSES), dim)
    table = stage2_target_charges(clip, pairs, orthogonal_text, TOY_CLASSES)
    reference = prompt_similarities(clip, pairs, targets, TOY_CLASSES)
    charge = reference["object + context"] - reference["object alone"]
    np.testing.assert_allclose(table["charge (target)"], charge[table.index], atol=1e-5)
    np.testing.assert_allclose(table["charge (target ⊥ text)"], table["charge (target)"], atol=1e-4)
    np.testing.assert_allclose(table["target · class text"], 0.0, atol=1e-4)
    assert table["pairs"].sum() == sum(bool(p.context_mask.any()) for p in pairs)


def test_stage2_view_by_object_count_groups_the_targets_cosines():
    """Each cell is the mean cosine of the pairs' views of the image minus the object with their
    class's context text, over the pairs of that class in scenes of that many objects."""
    clip, pairs = random_clip_and_pairs(6)
    counted = [
        Pair(p.image, p.class_index, p.object_mask, p.context_mask, scene_objects=n)
        for p, n in zip(pairs, [1, 2] * len(pairs))
    ]
    texts = clip.encode_texts([f"a photo of {c}." for c in ("sky", "water", "rails") * 2])
    table = stage2_view_by_object_count(clip, counted, texts, TOY_CLASSES)
    views = probe_features(clip, counted)["image minus object (stage 2's target)"]
    units = torch.nn.functional.normalize(texts.float(), dim=-1)
    for count in (1, 2):
        for k in {p.class_index for p in counted}:
            chosen = [i for i, p in enumerate(counted) if p.scene_objects == count
                      and p.class_index == k]  # fmt: skip
            expected = float((views[chosen] @ units[k]).mean()) if chosen else np.nan
            np.testing.assert_allclose(table.loc[count].get(TOY_CLASSES[k], np.nan), expected,
                                       atol=1e-5)  # fmt: skip
    assert list(table.index) == [1, 2]


def test_mask_mass_by_region_says_where_each_mask_looks():
    _, pairs = random_clip_and_pairs(6)
    pairs.append(Pair(pairs[0].image, pairs[0].class_index, pairs[0].object_mask))  # no context
    on_object = torch.stack([torch.from_numpy(p.object_mask).float() for p in pairs])
    table = mask_mass_by_region(pairs, on_object, TOY_CLASSES)
    np.testing.assert_allclose(table["object"], 1.0, atol=1e-5)
    np.testing.assert_allclose(table[["context", "elsewhere"]], 0.0, atol=1e-5)
    expected_area = {}
    for p in pairs:
        expected_area.setdefault(TOY_CLASSES[p.class_index], []).append(p.object_mask.mean())
    for name, areas in expected_area.items():
        assert table.loc[name, "area"] == pytest.approx(np.mean(areas), abs=1e-6)
    # half on the context, half on the object: the shares are those of the mass, not the pixels
    with_context = pairs[:-1]
    halves = torch.stack([
        torch.from_numpy(p.object_mask / max(p.object_mask.sum(), 1)
                         + p.context_mask / max(p.context_mask.sum(), 1)).float()
        for p in with_context
    ])  # fmt: skip
    table = mask_mass_by_region(with_context, halves, TOY_CLASSES)
    np.testing.assert_allclose(table["object"], 0.5, atol=1e-4)
    np.testing.assert_allclose(table["context"], 0.5, atol=1e-4)
    with pytest.raises(ValueError, match="5 masks for 6 pairs"):
        mask_mass_by_region(with_context[:6], halves[:5], TOY_CLASSES)


def test_mask_gradients_by_region_are_the_losses_directional_derivatives():
    """A region's column times its pixel share is the central difference of the term when that
    region of the mask moves; the area term's push is 1 per pixel by construction."""
    clip, pairs = random_clip_and_pairs(2)
    pair = next(p for p in pairs if p.context_mask.any())
    generator = torch.Generator().manual_seed(0)
    masks = 0.25 + 0.5 * torch.rand(1, 64, 64, generator=generator)
    # Class and prompt features that are views of the image itself, so that every similarity
    # sits inside the losses' clamp (a random CLIP's texts can fall below it: zero gradient).
    with torch.no_grad():
        image = pair.image.unsqueeze(0)
        labels = clip.encode_images(image).expand(len(TOY_CLASSES), -1).clone()
        context_view = image * torch.from_numpy(pair.context_mask).float()
        prompts = clip.encode_images(context_view).expand(len(TOY_CLASSES), -1).clone()
    table = mask_gradients_by_region(clip, [pair], masks, labels, {"texts": prompts}, TOY_CLASSES)
    name = TOY_CLASSES[pair.class_index]
    assert list(table.loc[name].index) == ["match_fg", "match_bg", "refine: texts"]
    u_f, u_b = labels[[pair.class_index]], prompts[[pair.class_index]]

    def terms(m: torch.Tensor) -> dict[str, float]:
        soft = m.unsqueeze(1)
        with torch.no_grad():
            fg = clip.encode_images(soft * pair.image)
            bg = clip.encode_images((1 - soft) * pair.image)
            match = match_loss(fg, bg, u_f, 1.0).parts
            return {**{k: float(v) for k, v in match.items()},
                    "refine: texts": float(refine_loss(fg, u_b))}  # fmt: skip

    assert (table.loc[name][["object", "context"]].abs() > 1e-2).all().all()  # not clamped
    step = 0.01
    object_mask = torch.from_numpy(pair.object_mask).float()
    context = torch.from_numpy(pair.context_mask & ~pair.object_mask).float()
    for region, where in (("object", object_mask), ("context", context)):
        up, down = terms(masks + step * where), terms(masks - step * where)
        share = float(where.mean())
        for term in table.loc[name].index:
            difference = (up[term] - down[term]) / (2 * step)
            assert table.loc[(name, term), region] * share == pytest.approx(
                difference, rel=0.05, abs=2e-3
            ), (region, term)
    # several classes: one block of terms per class, in the class list's order
    random_masks = torch.rand(len(pairs), 64, 64, generator=generator)
    text_features = class_text_features(clip, TOY_CLASSES)
    several = mask_gradients_by_region(clip, pairs, random_masks, text_features, {}, TOY_CLASSES)
    present = [c for c in TOY_CLASSES if c in {TOY_CLASSES[p.class_index] for p in pairs}]
    assert list(several.index) == [(c, t) for c in present for t in ("match_fg", "match_bg")]
    with pytest.raises(ValueError, match="2 masks for 1 pairs"):
        mask_gradients_by_region(clip, [pair], masks.expand(2, -1, -1), labels, {}, TOY_CLASSES)


def test_a_prompt_equal_to_its_fitted_target_fits_it_exactly():
    clip, pairs = random_clip_and_pairs(4)
    masks = torch.stack([torch.from_numpy(p.object_mask).float() for p in pairs])
    targets = stage2_fitted_targets(clip, pairs, masks, len(TOY_CLASSES))
    present = sorted({p.class_index for p in pairs})
    np.testing.assert_allclose(targets[present].norm(dim=-1), 1.0, atol=1e-5)
    absent = [k for k in range(len(TOY_CLASSES)) if k not in present]
    assert torch.all(targets[absent] == 0)
    table = prompt_fit(clip, pairs, masks, targets, TOY_CLASSES)
    assert list(table.index) == [TOY_CLASSES[k] for k in present]
    np.testing.assert_allclose(table["with the mean target"], 1.0, atol=1e-5)
    assert (table["with each target"] <= 1.0 + 1e-5).all()
    opposed = prompt_fit(clip, pairs, masks, -targets, TOY_CLASSES)["targets <= 1e-4"]
    assert (table["targets <= 1e-4"] <= opposed).all() and (opposed > 0).all()


def _unit_views(clip, pairs: list[Pair], masks: list[np.ndarray]) -> torch.Tensor:
    """CLIP's unit features of the pairs' images through ``masks``, one batch as the library's."""
    images = torch.stack(
        [torch.tensor(m, dtype=torch.float32) * p.image for p, m in zip(pairs, masks)]
    )
    with torch.no_grad():
        return torch.nn.functional.normalize(clip.encode_images(images).float(), dim=-1)


def test_similarity_by_growth_scores_the_object_dilated_by_each_radius():
    """Column r is the mean cosine with the class text of the object's mask dilated by r px
    (a disk), computed here by hand; r 0 is the object alone."""
    clip, pairs = random_clip_and_pairs(3)
    labels = class_text_features(clip, TOY_CLASSES)
    table = similarity_by_growth(clip, pairs, labels, TOY_CLASSES, radii=(0, 2))
    assert list(table.columns) == [0, 2]
    assert set(table.index) == {TOY_CLASSES[pair.class_index] for pair in pairs}
    disk = np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2) <= 4
    unit = torch.nn.functional.normalize(labels.float(), dim=-1)
    for radius, grow in ((0, lambda m: m), (2, lambda m: ndimage.binary_dilation(m, disk))):
        views = _unit_views(clip, pairs, [grow(pair.object_mask) for pair in pairs])
        by_class: dict[str, list[float]] = {}
        for pair, view in zip(pairs, views):
            by_class.setdefault(TOY_CLASSES[pair.class_index], []).append(
                float(view @ unit[pair.class_index])
            )
        for name, values in by_class.items():
            assert table.loc[name, radius] == pytest.approx(np.mean(values), abs=1e-5)


def test_ring_similarities_see_only_the_ring_around_the_object():
    """A text equal to CLIP's view of the 3 px ring (dilation minus object) scores 1 with it;
    one equal to the object's own view scores less."""
    clip, pairs = random_clip_and_pairs(1)
    pair = pairs[0]
    disk = np.add.outer(np.arange(-3, 4) ** 2, np.arange(-3, 4) ** 2) <= 9
    ring = ndimage.binary_dilation(pair.object_mask, disk) & ~pair.object_mask
    texts = {
        "the ring": _unit_views(clip, [pair], [ring])[0],
        "the object": _unit_views(clip, [pair], [pair.object_mask])[0],
    }
    table = ring_similarities(clip, [pair], texts, TOY_CLASSES)
    name = TOY_CLASSES[pair.class_index]
    assert table.loc[name, "the ring"] == pytest.approx(1.0, abs=1e-5)
    assert table.loc[name, "the object"] < 0.999
