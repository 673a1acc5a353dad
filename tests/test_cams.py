"""Tests of semples.cams: multi-scale CAM inference with a fake generator, and CAM evaluation."""

import semples  # noqa: F401  (isort: skip)

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from semples.cams import (
    cam_records,
    context_map_loaders,
    evaluate_cams,
    evaluate_generator,
    evaluate_stages,
    multiscale_cams,
)
from semples.datasets.mask_set import write_item


class FakeGenerator(nn.Module):
    """Logits at stride 4: class k is colour channel k minus 0.4 (so ReLU matters), average
    pooled; ``ramp`` weights them by the column, which breaks left-right symmetry. Records the
    batch shapes and the training flag it was called with."""

    num_classes = 3
    output_stride = 4

    def __init__(self, ramp: bool = False):
        super().__init__()
        self.ramp = ramp
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(images.shape), self.training))
        maps = images - 0.4
        if self.ramp:
            maps = maps * torch.linspace(0.0, 2.0, images.shape[-1])
        return F.avg_pool2d(maps, 4, ceil_mode=True)


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def test_shapes_keys_and_normalisation():
    cams = multiscale_cams(FakeGenerator(), random_image(30, 22), [2, 0])
    np.testing.assert_array_equal(cams["keys"], [3, 1])
    assert cams["keys"].dtype.kind == "i"
    assert cams["cam"].shape == (2, 30, 22) and cams["cam"].dtype == np.float32
    assert cams["cam_stride4"].shape == (2, 8, 6) and cams["cam_stride4"].dtype == np.float32
    for array in (cams["cam"], cams["cam_stride4"]):
        assert array.min() >= 0
        np.testing.assert_allclose(array.max(axis=(1, 2)), 1.0, atol=1e-4)


def test_single_scale_without_flip_is_the_upsampled_relu_logits():
    generator, image = FakeGenerator(), random_image(30, 22)
    cams = multiscale_cams(generator, image, [1], scales=(1.0,), flip=False)
    logits = F.relu(generator(image[None]))[:, 1:2]
    expected = F.interpolate(logits, size=(30, 22), mode="bilinear", align_corners=False)[0]
    expected = expected / (expected.amax(dim=(1, 2), keepdim=True) + 1e-5)
    np.testing.assert_allclose(cams["cam"], expected.numpy(), atol=1e-6)


def test_only_the_listed_classes_are_kept_each_normalised_alone():
    image = random_image(30, 22)
    both = multiscale_cams(FakeGenerator(), image, [0, 2])
    alone = multiscale_cams(FakeGenerator(), image, [2])
    np.testing.assert_allclose(both["cam"][1:], alone["cam"], atol=1e-6)
    np.testing.assert_allclose(both["cam_stride4"][1:], alone["cam_stride4"], atol=1e-6)


def test_no_classes():
    cams = multiscale_cams(FakeGenerator(), random_image(30, 22), [])
    assert cams["keys"].shape == (0,) and cams["keys"].dtype.kind == "i"
    assert cams["cam"].shape == (0, 30, 22) and cams["cam_stride4"].shape == (0, 8, 6)


def test_a_symmetric_generator_on_a_flipped_image_gives_the_flipped_cam():
    # 32 x 32 keeps every scale's size a multiple of the stride, so pooling is symmetric too
    image = random_image(32, 32)
    cams = multiscale_cams(FakeGenerator(), image, [0, 1, 2], flip=False)
    flipped = multiscale_cams(FakeGenerator(), image.flip(-1), [0, 1, 2], flip=False)
    for key in ("cam", "cam_stride4"):
        np.testing.assert_allclose(flipped[key], cams[key][..., ::-1], atol=1e-5)


def test_flip_inference_is_flip_consistent_for_any_generator():
    image = random_image(30, 22)
    cams = multiscale_cams(FakeGenerator(ramp=True), image, [0, 1])
    flipped = multiscale_cams(FakeGenerator(ramp=True), image.flip(-1), [0, 1])
    for key in ("cam", "cam_stride4"):
        np.testing.assert_allclose(flipped[key], cams[key][..., ::-1], atol=1e-5)
    unflipped = multiscale_cams(FakeGenerator(ramp=True), image, [0, 1], flip=False)
    assert not np.allclose(unflipped["cam"], cams["cam"], atol=1e-3)  # the ramp does matter


def test_one_batch_of_two_per_scale_in_eval_mode_and_mode_restored():
    generator = FakeGenerator().train()
    multiscale_cams(generator, random_image(32, 32), [0])
    sizes = [32, 16, 48, 64]
    assert generator.calls == [((2, 3, s, s), False) for s in sizes]
    assert generator.training
    generator.eval()
    multiscale_cams(generator, random_image(32, 32), [0], scales=(0.5,), flip=False)
    assert generator.calls[-1] == ((1, 3, 16, 16), False) and not generator.training


@pytest.mark.parametrize(
    ("image", "classes", "scales", "message"),
    [
        (random_image(8, 8), [3], (1.0,), r"outside \[0, 3\): \[3\]"),
        (random_image(8, 8), [1, 1], (1.0,), "repeat"),
        (random_image(8, 8), [0], (), "scales must not be empty"),
        (random_image(8, 8)[:2], [0], (1.0,), "3 x H x W"),
        ((random_image(8, 8) * 255).to(torch.uint8), [0], (1.0,), "float"),
    ],
)
def test_multiscale_cams_errors(image, classes, scales, message):
    with pytest.raises(ValueError, match=message):
        multiscale_cams(FakeGenerator(), image, classes, scales)


def test_cam_records_converts_the_uint8_image():
    array = np.random.default_rng(0).integers(0, 256, size=(30, 22, 3), dtype=np.uint8)
    records = cam_records(FakeGenerator(), lambda: array, [1], scales=(1.0, 0.5), flip=True)
    image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    expected = multiscale_cams(FakeGenerator(), image, [1], scales=(1.0, 0.5))
    assert records.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(records[key], value, atol=1e-6)
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        cam_records(FakeGenerator(), lambda: array.astype(float), [1])


# --- evaluation ---------------------------------------------------------------------------

NAMES = ["cat", "dog", "cow"]


def scene() -> tuple[np.ndarray, dict]:
    """8 x 8 mask: a cat (label 1) in the top-left quarter, a cow (3) in the bottom-right
    corner, one ignored pixel; perfect CAMs score 0.9 on their object and 0.1 elsewhere."""
    gt = np.zeros((8, 8), dtype=np.uint8)
    gt[:4, :4] = 1
    gt[6:, 6:] = 3
    gt[5, 0] = 255
    cam = np.full((2, 8, 8), 0.1, dtype=np.float32)
    cam[0][gt == 1] = 0.9
    cam[1][gt == 3] = 0.9
    return gt, {"keys": np.array([1, 3]), "cam": cam}


def loaders(items: dict) -> dict:
    return {key: (lambda value=value: value) for key, value in items.items()}


def test_perfect_cams_score_one_between_the_foreground_and_background_values():
    gt, cam = scene()
    report = evaluate_cams(
        loaders({"a": cam, "b": cam}), loaders({"a": gt, "b": gt}), NAMES, [0.05, 0.5, 0.95]
    )
    assert report["miou"] == pytest.approx(1.0) and report["best_threshold"] == 0.5
    assert report["per_class_iou"] == {"background": 1.0, "cat": 1.0, "dog": None, "cow": 1.0}
    assert report["per_class_precision"]["cat"] == 1.0 and report["per_class_recall"]["cow"] == 1
    thresholds = [row["threshold"] for row in report["sweep"]]
    assert thresholds == [0.05, 0.5, 0.95]
    # at 0.05 every scored pixel is foreground, background ties go to the cat (first channel);
    # at 0.95 all is background. 43 scored background pixels, 16 cat, 4 cow.
    assert report["sweep"][0]["miou"] == pytest.approx((0 + 16 / 59 + 1) / 3)
    assert report["sweep"][2]["miou"] == pytest.approx((43 / 63 + 0 + 0) / 3)
    assert report["num_images"] == 2
    json.dumps(report)


def test_trivial_baseline_by_hand():
    gt = np.zeros((8, 8), dtype=np.uint8)
    gt[:4, :4] = 2  # a dog over a quarter of the image
    cam = np.zeros((1, 8, 8), dtype=np.float32)
    cam[0][gt == 2] = 0.8
    report = evaluate_cams(
        loaders({"x": {"keys": np.array([2]), "cam": cam}}), loaders({"x": gt}), NAMES, [0.3, 0.6]
    )
    # trivial: every pixel dog -> background IoU 0 / 48, dog IoU 16 / 64
    assert report["trivial_miou"] == pytest.approx((0 + 16 / 64) / 2)
    assert report["miou"] == pytest.approx(1.0)


def test_missing_ground_truth_names_the_id():
    gt, cam = scene()
    with pytest.raises(KeyError, match="'lost'"):
        evaluate_cams(loaders({"a": cam, "lost": cam}), loaders({"a": gt}), NAMES, [0.5])


def test_size_mismatch_names_the_id_and_both_sizes():
    gt, cam = scene()
    with pytest.raises(ValueError, match=r"'a'.*\(8, 8\).*\(4, 8\)"):
        evaluate_cams(loaders({"a": cam}), loaders({"a": gt[:4]}), NAMES, [0.5])


def test_no_cams():
    with pytest.raises(ValueError, match="no CAMs"):
        evaluate_cams({}, {}, NAMES, [0.5])


def test_context_leak_at_the_best_threshold():
    gt, cam = scene()
    context = np.zeros_like(gt)
    context[4:6, 1:5] = 1  # 8 pixels of the cat's context, 2 of them lit by the cat's CAM
    cam["cam"][0][4, 1:3] = 0.95
    report = evaluate_cams(
        loaders({"a": cam}), loaders({"a": gt}), NAMES, [0.5, 0.97], loaders({"a": context})
    )
    assert report["best_threshold"] == 0.5
    assert report["context_leak"] == {
        "overall": 0.25,
        "per_class": {"cat": 0.25, "dog": None, "cow": None},
    }
    assert (
        evaluate_cams(loaders({"a": cam}), loaders({"a": gt}), NAMES, [0.5])["context_leak"] is None
    )
    with pytest.raises(KeyError, match="no context map for CAM 'a'"):
        evaluate_cams(loaders({"a": cam}), loaders({"a": gt}), NAMES, [0.5], {})


def test_evaluate_generator_scores_in_memory_cams_like_saved_ones(tmp_path):
    rng = np.random.default_rng(0)
    rows, gts, contexts = [], {}, {}
    for name, labels in (("a", [1, 0, 1]), ("b", [0, 1, 0])):
        image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"{name}.png")
        rows.append({"id": name, "image_path": str(tmp_path / f"{name}.png"), "labels": labels})
        gts[name] = rng.integers(0, 4, (12, 16)).astype(np.uint8)
        contexts[name] = rng.integers(0, 4, (12, 16)).astype(np.uint8)
    rows = pd.DataFrame(rows)
    generator, thresholds = FakeGenerator(ramp=True), [0.2, 0.5, 0.8]
    report = evaluate_generator(
        generator, rows, loaders(gts), NAMES, thresholds, (1.0, 0.5), False, "cpu",
        loaders(contexts),
    )  # fmt: skip
    saved = {
        row.id: cam_records(generator, lambda p=row.image_path: np.asarray(Image.open(p)),
                            [k for k, on in enumerate(row.labels) if on], (1.0, 0.5), False)
        for row in rows.itertuples()
    }  # fmt: skip
    expected = evaluate_cams(loaders(saved), loaders(gts), NAMES, thresholds, loaders(contexts))
    del expected["sweep"]
    assert report == {**expected, "scales": [1.0, 0.5], "flip": False}
    assert report["context_leak"]["overall"] is not None
    json.dumps(report)


def test_a_skipped_stage_repeats_its_input_without_scoring_again():
    calls = []

    def evaluate(name, state):
        calls.append(name)
        return {"miou": state}

    reports = evaluate_stages(
        {"initial": 0.1, "stage1": 0.2, "stage3": 0.3}, {"stage3": "match_only"}, evaluate
    )
    assert calls == ["initial", "stage1"]
    assert reports["stage1"] == {"miou": 0.2, "skipped": False, "skip_reason": None}
    assert reports["stage3"] == {"miou": 0.2, "skipped": True, "skip_reason": "match_only"}
    everything = {"stage1": "none", "stage2": "none", "stage3": "none"}
    reports = evaluate_stages({"initial": 0.1, "stage1": 0.2, "stage3": 0.3}, everything, evaluate)
    assert [r["miou"] for r in reports.values()] == [0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="first stage 'initial'"):
        evaluate_stages({"initial": 0.1}, {"initial": "?"}, evaluate)


def test_context_map_loaders(tmp_path):
    write_item(tmp_path, "a", np.array([[0, 2]], dtype=np.uint8))
    rows = pd.DataFrame({"id": ["a"], "context_path": [str(tmp_path / "a.png")]})
    np.testing.assert_array_equal(context_map_loaders(rows, 3)["a"](), [[0, 2]])
    assert context_map_loaders(rows.drop(columns="context_path"), 3) is None
    assert context_map_loaders(rows.assign(context_path=None), 3) is None
    partial = pd.concat([rows, pd.DataFrame({"id": ["b"], "context_path": [None]})])
    with pytest.raises(ValueError, match=r"1 image index rows have no context_path: \['b'\]"):
        context_map_loaders(partial, 3)
