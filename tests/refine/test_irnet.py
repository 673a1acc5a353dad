"""IRNet: shapes, IRN's pair labels and losses, training, resume and input checks."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from tolerances import FP32_NETWORK

from semples.refine.irnet import (
    IRNet,
    affinity_labels,
    edge_to_affinity,
    irnet_loss,
    predict_edge,
)
from semples.refine.irnet_training import IrLabelDataset, IrnetConfig, poly_lr, train_irnet
from semples.refine.random_walk import edge_affinities, search_paths


@pytest.fixture(scope="module")
def resnet() -> IRNet:
    torch.manual_seed(0)
    return IRNet("resnet50")


def small_net() -> IRNet:
    """The same initial weights on every call."""
    torch.manual_seed(0)
    return IRNet("small")


def two_squares(index: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A red square (class 1) on the left and a blue one (class 2) on the right, on grey."""
    rng = np.random.default_rng(index)
    image = np.full((size, size, 3), 90, np.uint8)
    label = np.zeros((size, size), np.uint8)
    for cls, channel, left in ((1, 0, 0), (2, 2, size // 2)):
        side = int(rng.integers(6, 11))
        top, x = int(rng.integers(0, size - side)), left + int(rng.integers(0, size // 2 - side))
        image[top : top + side, x : x + side] = 0
        image[top : top + side, x : x + side, channel] = 255
        label[top : top + side, x : x + side] = cls
    return image, label


def squares_dataset(
    count: int = 8, crop_size: int | None = 32, kind: type[IrLabelDataset] = IrLabelDataset
) -> IrLabelDataset:
    scenes = [two_squares(i) for i in range(count)]
    images = [lambda scene=scene: scene[0] for scene in scenes]
    labels = [lambda scene=scene: scene[1] for scene in scenes]
    return kind(images, labels, crop_size=crop_size, hflip=True, seed=0)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_small_backbone_shapes_at_stride_4_with_ceil_for_odd_sides():
    model = small_net()
    edge, displacement = model(torch.rand(2, 3, 64, 66))
    assert edge.shape == (2, 1, 16, 17)
    assert displacement.shape == (2, 2, 16, 17)


@pytest.mark.parametrize("scale", [2, 4])
def test_image_scale_puts_the_maps_at_a_finer_stride_of_the_image(scale):
    torch.manual_seed(0)
    model = IRNet("small", image_scale=scale)
    assert model.stride == 4 // scale
    edge, displacement = model(torch.rand(2, 3, 32, 40))
    assert edge.shape == (2, 1, 8 * scale, 10 * scale)
    assert displacement.shape == (2, 2, 8 * scale, 10 * scale)
    # the same weights on the upsampled image by hand
    upsampled = torch.nn.functional.interpolate(
        torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),
        scale_factor=scale, mode="bilinear", align_corners=False,
    )  # fmt: skip
    plain = IRNet("small")
    plain.load_state_dict(model.state_dict())
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.eval()(image)[0], plain.eval()(upsampled)[0], **FP32_NETWORK)
    assert predict_edge(model, image[0]).shape == (4 * scale, 4 * scale)


def test_resnet50_shapes_and_frozen_backbone(resnet):
    resnet.train()
    assert not any(p.requires_grad for p in resnet.backbone.parameters())
    assert not any(m.training for m in resnet.backbone.modules())  # IRN's fixed batch norm
    edge, displacement = resnet(torch.rand(1, 3, 64, 64))
    assert edge.shape == (1, 1, 16, 16) and displacement.shape == (1, 2, 16, 16)
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[:, 4:10, 4:10] = 1
    irnet_loss(edge, displacement, labels, radius=5)["total"].backward()
    assert all(p.grad is None for p in resnet.backbone.parameters())
    edge_side, displacement_side = resnet.parameter_groups()
    assert all(p.grad is not None for p in [*edge_side, *displacement_side])
    resnet.zero_grad(set_to_none=True)


def test_resnet50_loads_a_torchvision_state_dict_and_ignores_fc(resnet, tmp_path):
    path = tmp_path / "resnet50.pt"
    state = resnet.backbone.state_dict()
    torch.save({**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}, path)
    loaded = IRNet("resnet50", weights=path)
    assert states_equal(loaded.backbone.state_dict(), state)

    torch.save({"conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a torchvision ResNet-50"):
        IRNet("resnet50", weights=path)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown IRNet backbone"):
        IRNet("vgg16")
    with pytest.raises(ValueError, match="weights"):
        IRNet("small", weights="resnet50.pt")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        small_net()(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"image_scale must be one of \(1, 2, 4\), got 3"):
        IRNet("small", image_scale=3)


LABELS = torch.tensor(
    [
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 1],
        [0, 255, 2, 2, 2],
        [0, 0, 2, 2, 2],
    ]
)


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (((0, 0), (0, 1)), "bg_pos"),
        (((0, 1), (0, 2)), "neg"),
        (((0, 2), (0, 3)), "fg_pos"),
        (((1, 2), (2, 2)), "neg"),  # classes 1 and 2
        (((2, 2), (3, 3)), "fg_pos"),
        (((0, 2), (1, 1)), "neg"),
        (((1, 1), (2, 1)), None),  # ignored destination
        (((2, 1), (2, 2)), None),  # ignored source
        (((1, 2), (2, 1)), None),
        (((0, 4), (0, 5)), None),  # leaves the map
        (((3, 0), (4, 0)), None),
    ],
)
def test_affinity_labels_of_hand_checked_pairs(pair, expected):
    masks = dict(zip(("bg_pos", "fg_pos", "neg"), affinity_labels(LABELS[None], radius=2)))
    directions = [offset for offset, _ in search_paths(2)]
    (y, x), (ty, tx) = pair
    k = directions.index((ty - y, tx - x))
    for name, mask in masks.items():
        assert mask.shape == (1, 4, 4, 5)
        assert mask[0, k, y, x] == (name == expected), name


def test_affinity_labels_match_the_definition_everywhere():
    labels = torch.randint(0, 3, (7, 9), generator=torch.Generator().manual_seed(0))
    labels[torch.rand(7, 9, generator=torch.Generator().manual_seed(1)) < 0.2] = 255
    bg_pos, fg_pos, neg = (m[0] for m in affinity_labels(labels[None], radius=4))
    for k, ((dy, dx), _) in enumerate(search_paths(4)):
        for y in range(7):
            for x in range(9):
                inside = 0 <= y + dy < 7 and 0 <= x + dx < 9
                a, b = int(labels[y, x]), int(labels[y + dy, x + dx]) if inside else 255
                labelled = a != 255 and b != 255
                assert bg_pos[k, y, x] == (labelled and a == b == 0)
                assert fg_pos[k, y, x] == (labelled and a == b > 0)
                assert neg[k, y, x] == (labelled and a != b)


@pytest.mark.parametrize("radius", [3, 5, 10])
def test_edge_to_affinity_equals_the_random_walks_affinities(radius):
    edge = torch.rand(2, 1, 13, 17, generator=torch.Generator().manual_seed(radius))
    batched = edge_to_affinity(edge, radius)
    for i in range(2):
        assert torch.equal(batched[i], edge_affinities(edge[i, 0], radius).values)


def test_loss_terms_are_finite_and_reach_every_trainable_part():
    model = small_net()
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:6, 1:4], labels[:, 2:6, 5:8], labels[:, 0, :] = 1, 2, 255
    losses = irnet_loss(*model(torch.rand(2, 3, 32, 32)), labels, radius=5)
    assert set(losses) == {"pos_aff", "neg_aff", "dp_fg", "dp_bg", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    expected = (losses["pos_aff"] + losses["neg_aff"]) / 2 + (losses["dp_fg"] + losses["dp_bg"]) / 2
    assert torch.allclose(losses["total"], expected)
    losses["total"].backward()
    for part in (model.backbone, model.edge_branch, model.displacement_branch):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_displacement_to_the_centroid_has_zero_displacement_loss():
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[0, 2:6, 3:8] = 1
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    centroid = torch.tensor([3.5, 5.0]).view(2, 1, 1)
    toward = (centroid - torch.stack([ys, xs])) * (labels[0] == 1)
    no_edges = torch.full((1, 1, 10, 10), -20.0)

    losses = irnet_loss(no_edges, toward[None], labels, radius=4)
    assert losses["dp_fg"] < 1e-5 and losses["dp_bg"] < 1e-5
    assert losses["pos_aff"] < 1e-3 and losses["neg_aff"] > 5  # no edge: every pair is linked
    assert irnet_loss(no_edges, -toward[None], labels, radius=4)["dp_fg"] > 1


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="expected edge logits"):
        irnet_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(1, 8, 9).long())


def test_predict_edge_is_a_flip_symmetric_probability_map():
    model = small_net().train()
    image = torch.rand(3, 32, 40, generator=torch.Generator().manual_seed(0))
    edge = predict_edge(model, image)
    assert edge.shape == (8, 10) and model.training
    assert bool(((edge >= 0) & (edge <= 1)).all())
    # the net sees a mirrored input: another fp32 computation, equal only to kernel precision
    torch.testing.assert_close(predict_edge(model, image.flip(-1)), edge.flip(-1), **FP32_NETWORK)


def test_dataset_crops_flips_and_subsamples_image_and_label_together():
    for crop_size in (16, 48):  # cropped, padded
        dataset = squares_dataset(4, crop_size=crop_size)
        for epoch in range(3):
            dataset.set_epoch(epoch)
            for index in range(4):
                image, label, position = dataset[index]
                assert position == index
                assert image.shape == (3, crop_size, crop_size)
                assert label.shape == (crop_size // 4, crop_size // 4) and label.dtype == torch.long
                sampled = image[:, ::4, ::4]
                assert torch.equal(label == 1, sampled[0] == 1)  # red squares
                assert torch.equal(label == 2, sampled[2] == 1)  # blue squares
                assert bool((sampled[:, label == 255] == 0).all())  # padding
                assert torch.equal(dataset[index][0], image)  # a function of (seed, epoch, index)
    dataset.set_epoch(0)
    assert (dataset[0][1] == 255).any()  # 32 px in 48 px crops


def test_dataset_subsamples_labels_at_irnets_stride():
    scenes = [two_squares(i) for i in range(2)]
    fine = IrLabelDataset(
        [lambda s=s: s[0] for s in scenes], [lambda s=s: s[1] for s in scenes],
        crop_size=32, hflip=True, seed=0, stride=2,
    )  # fmt: skip
    coarse = squares_dataset(2)
    for index in range(2):
        (image, label, _), (same_image, coarse_label, _) = fine[index], coarse[index]
        assert torch.equal(image, same_image) and label.shape == (16, 16)
        assert torch.equal(label[::2, ::2], coarse_label)
    with pytest.raises(ValueError, match=r"stride must be one of IRNet's \(4, 2, 1\), got 3"):
        IrLabelDataset([], [], crop_size=None, hflip=False, seed=0, stride=3)


def test_dataset_rejects_bad_items_and_crop_sizes():
    image = np.zeros((32, 32, 3), np.uint8)
    dataset = IrLabelDataset(
        [lambda: image] * 2, [lambda: np.zeros((32, 32), np.uint8), lambda: np.zeros((32, 30))],
        crop_size=None, hflip=False, seed=0,
    )  # fmt: skip
    dataset[0]
    with pytest.raises(ValueError, match="item 1"):
        dataset[1]
    with pytest.raises(ValueError, match="multiple of 4"):
        IrLabelDataset([lambda: image], [lambda: image[..., 0]], crop_size=30, hflip=False, seed=0)
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        IrLabelDataset([lambda: image] * 2, [lambda: image[..., 0]], None, False, 0)


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"weight_decay": -1.0},
        {"crop_size": 50}, {"radius": 1}, {"max_steps": 0},
    ],
)  # fmt: skip
def test_config_rejects_bad_values(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        IrnetConfig(**options)


CONFIG = IrnetConfig(epochs=2, batch_size=4, crop_size=32, radius=5)


def test_training_lowers_the_loss_with_irns_poly_decay():
    config = IrnetConfig(epochs=6, batch_size=4, crop_size=32, radius=5)
    history = train_irnet(small_net(), squares_dataset(), config, progress=False)
    assert history.columns.tolist() == [
        "epoch", "step", "lr", "pos_aff", "neg_aff", "dp_fg", "dp_bg", "total",
    ]  # fmt: skip
    assert history["step"].tolist() == list(range(1, 13))
    assert history["lr"].tolist() == [poly_lr(config.lr, step, 12) for step in range(12)]
    assert history["total"].tail(3).mean() < 0.8 * history["total"].head(3).mean()


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    uninterrupted = small_net()
    full_history = train_irnet(uninterrupted, squares_dataset(), CONFIG, progress=False)

    class CrashingAtEpoch1(IrLabelDataset):  # killed once the first epoch's checkpoint is saved
        def set_epoch(self, epoch: int) -> None:
            if epoch == 1:
                raise KeyboardInterrupt
            super().set_epoch(epoch)

    checkpoint = tmp_path / "irnet.pt"
    with pytest.raises(KeyboardInterrupt):
        crashing = squares_dataset(kind=CrashingAtEpoch1)
        train_irnet(small_net(), crashing, CONFIG, checkpoint, progress=False)
    assert checkpoint.is_file()

    resumed = small_net()
    resumed_history = train_irnet(resumed, squares_dataset(), CONFIG, checkpoint, progress=False)
    assert states_equal(resumed.state_dict(), uninterrupted.state_dict())
    pd.testing.assert_frame_equal(resumed_history, full_history)
    assert full_history["epoch"].tolist() == [0, 0, 1, 1]


def test_training_checks_its_inputs():
    with pytest.raises(ValueError, match="crop_size"):
        train_irnet(small_net(), squares_dataset(crop_size=16), CONFIG, progress=False)
    with pytest.raises(ValueError, match="stride 4, IRNet predicts at stride 2"):
        train_irnet(IRNet("small", image_scale=2), squares_dataset(), CONFIG, progress=False)
    model = small_net()
    with torch.no_grad():
        model.edge_branch.classify.bias.fill_(math.nan)
    with pytest.raises(FloatingPointError, match="step 1"):
        train_irnet(model, squares_dataset(), CONFIG, progress=False)
