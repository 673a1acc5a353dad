"""Tests of semples.models.cam_networks: the generator contract for each architecture, the
training masks, and weight loading."""

import logging
import time

import pytest
import timm
import torch
import torchvision

from semples.models import (
    DeiTSmallCam,
    ResNet50Cam,
    SmallFcnCam,
    build_mask_generator,
    inference_cams,
    masks_for_pairs,
)
from semples.models.cam_networks import GENERATOR_ARCHITECTURES, check_generator_options

ARCHS = {
    "small_fcn": (SmallFcnCam, 4),
    "resnet50": (ResNet50Cam, 16),
    "deit_small": (DeiTSmallCam, 16),
}
NUM_CLASSES = 5


@pytest.fixture(scope="module")
def generators():
    torch.manual_seed(0)
    return {arch: build_mask_generator(arch, NUM_CLASSES) for arch in ARCHS}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("size", [(96, 96), (128, 160)])
def test_output_shape_and_stride(generators, arch, size):
    model = generators[arch]
    cls, stride = ARCHS[arch]
    assert isinstance(model, cls)
    assert model.num_classes == NUM_CLASSES and model.output_stride == stride
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, *size))
    assert logits.shape == (1, NUM_CLASSES, size[0] // stride, size[1] // stride)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_normalisation_is_inside_the_generator(generators, arch):
    model = generators[arch].eval()
    images = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.classifier(model.features((images - mean) / std))
        torch.testing.assert_close(model(images), expected)
    assert not any("pixel" in key for key in model.state_dict())


def test_generator_rejects_non_rgb_batches(generators):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        generators["small_fcn"](torch.rand(3, 32, 32))


def test_deit_rejects_sizes_not_multiple_of_16(generators):
    with pytest.raises(ValueError, match="multiples of 16"):
        generators["deit_small"](torch.rand(1, 3, 40, 48))


@pytest.mark.parametrize("arch", ["small_fcn", "deit_small"])
def test_gradients_reach_every_parameter(generators, arch):
    model = generators[arch].train()
    model.zero_grad()
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert model.classifier.weight.grad.abs().sum() > 0


def test_resnet_freezes_stem_and_batch_norm_statistics(generators):
    model = generators["resnet50"].train()
    model.zero_grad()
    running_mean = model.backbone.layer3[0].bn1.running_mean.clone()
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    torch.testing.assert_close(model.backbone.layer3[0].bn1.running_mean, running_mean)
    assert not model.backbone.layer3[0].bn1.training
    for name, parameter in model.named_parameters():
        frozen = name.startswith(
            ("backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2")
        )
        assert parameter.requires_grad is not frozen, name
        if not frozen:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_resnet_without_frozen_stem_trains_everything():
    model = ResNet50Cam(2, freeze_stem=False).train()
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())
    assert model.backbone.bn1.training


def test_unknown_arch_lists_the_choices():
    with pytest.raises(ValueError, match="deit_small.*resnet50.*small_fcn"):
        build_mask_generator("vgg16", 3)


def test_num_classes_must_be_positive():
    with pytest.raises(ValueError, match="num_classes"):
        SmallFcnCam(0)


def _stride4_cells_seen(model: SmallFcnCam, radius: int) -> torch.Tensor:
    """Which stride-4 cells within ``radius`` cells of the centre change the centre logit:
    the gradient of that logit with respect to the stride-4 features (after block 2)."""
    model.eval()
    features = model.backbone[:2](torch.rand(1, 3, 96, 96)).detach().requires_grad_(True)
    logits = model.classifier(model.backbone[2:](features))
    centre = logits.shape[-1] // 2
    logits[0, 0, centre, centre].backward()
    window = features.grad[0].abs().sum(0)
    return window[centre - radius : centre + radius + 1, centre - radius : centre + radius + 1] > 0


def test_small_fcn_dilations_leave_no_grid_holes_near_the_centre():
    torch.manual_seed(0)
    assert _stride4_cells_seen(SmallFcnCam(3), radius=3).all()
    # The earlier dilations 2 and 4 share a factor: odd offsets were never seen (gridding).
    gridded = _stride4_cells_seen(SmallFcnCam(3, dilations=(2, 4)), radius=3)
    assert gridded[1::2, 1::2].all() and not gridded[0::2].any() and not gridded[:, 0::2].any()


@pytest.mark.parametrize("dilations", [(2,), (2, 0), (2, 3.5)])
def test_small_fcn_rejects_bad_dilations(dilations):
    with pytest.raises(ValueError, match="dilations must be two integers"):
        SmallFcnCam(3, dilations=dilations)


def test_small_fcn_speed():
    model = SmallFcnCam(6).train()
    images = torch.rand(16, 3, 96, 96)
    for _ in range(3):
        model(images).sum().backward()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        model(images).sum().backward()
        times.append(time.perf_counter() - start)
    print(f"SmallFcnCam forward+backward, 16 x 96 px: median {sorted(times)[5] * 1000:.1f} ms")


# ---- masks_for_pairs / inference_cams -------------------------------------------------------


def _naive_masks(logits, batch_index, class_index, size, eps):
    masks = []
    for b, k in zip(batch_index.tolist(), class_index.tolist()):
        m = torch.sigmoid(logits[b, k])[None, None]
        m = torch.nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False)[
            0, 0
        ]
        masks.append((m - m.min()) / (m.max() - m.min() + eps))
    return torch.stack(masks)


def test_masks_for_pairs_matches_naive_loop_and_range():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, 5) * 3
    batch_index = torch.tensor([0, 0, 2, 1])
    class_index = torch.tensor([1, 3, 0, 3])
    masks = masks_for_pairs(logits, batch_index, class_index, size=(24, 20))
    assert masks.shape == (4, 24, 20)
    torch.testing.assert_close(masks, _naive_masks(logits, batch_index, class_index, (24, 20), 0.1))
    assert (masks >= 0).all() and (masks < 1).all()
    torch.testing.assert_close(masks.amin(dim=(1, 2)), torch.zeros(4))
    custom = masks_for_pairs(logits, batch_index, class_index, size=(24, 20), eps=1e-3)
    torch.testing.assert_close(
        custom, _naive_masks(logits, batch_index, class_index, (24, 20), 1e-3)
    )


def test_masks_for_pairs_is_differentiable_and_touches_only_selected_maps():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    masks = masks_for_pairs(logits, torch.tensor([1]), torch.tensor([2]), size=(16, 16))
    masks.sum().backward()
    selected = torch.zeros(2, 3, dtype=torch.bool)
    selected[1, 2] = True
    per_map = logits.grad.abs().sum(dim=(2, 3))
    assert per_map[selected].item() > 0
    assert not per_map[~selected].any()


def test_masks_for_pairs_empty_selection_and_validation():
    logits = torch.randn(2, 3, 4, 4)
    empty = torch.zeros(0, dtype=torch.long)
    assert masks_for_pairs(logits, empty, empty, size=(8, 8)).shape == (0, 8, 8)
    with pytest.raises(ValueError, match="equal length"):
        masks_for_pairs(logits, torch.tensor([0, 1]), torch.tensor([0]), size=(8, 8))
    with pytest.raises(ValueError, match=r"\[B, K, h, w\]"):
        masks_for_pairs(logits[0], torch.tensor([0]), torch.tensor([0]), size=(8, 8))


def test_relu_max_masks_are_the_max_normalised_relu_of_the_selected_maps():
    """``relu_max`` is the function of the logits that inference scores (ReLU, upsampled,
    over its maximum); a map without positive evidence stays near zero instead of being
    stretched to 1."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 5) * 3
    logits[1, 0] = -torch.rand(6, 5)  # no positive evidence at all
    logits[0, 2] = logits[0, 2].clamp(max=0.01)  # weak evidence: max below eps
    batch_index, class_index = torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2])
    masks = masks_for_pairs(logits, batch_index, class_index, (24, 20), activation="relu_max")
    upsampled = torch.nn.functional.interpolate(
        torch.relu(logits[batch_index, class_index]).unsqueeze(1), size=(24, 20),
        mode="bilinear", align_corners=False,
    ).squeeze(1)  # fmt: skip
    torch.testing.assert_close(masks[0], upsampled[0] / (upsampled[0].max() + 1e-5))
    assert masks[0].max() == pytest.approx(1.0, abs=1e-4) and (masks >= 0).all()
    assert not masks[1].any()
    assert masks[2].max() <= 0.01 / 0.1 + 1e-6
    with pytest.raises(ValueError, match="unknown mask activation 'tanh'"):
        masks_for_pairs(logits, batch_index, class_index, (24, 20), activation="tanh")


def test_inference_cams_is_relu():
    logits = torch.tensor([[[[-1.0, 0.5], [2.0, -0.0]]]])
    torch.testing.assert_close(inference_cams(logits), torch.tensor([[[[0.0, 0.5], [2.0, 0.0]]]]))


# ---- weights ---------------------------------------------------------------------------------


def test_torchvision_resnet50_state_dict_loads_into_the_trunk(tmp_path, caplog):
    torch.manual_seed(1)
    source = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(source, path)
    with caplog.at_level(logging.WARNING):
        model = build_mask_generator("resnet50", 3, weights=path)
    assert not caplog.records  # the source's fc.* head is dropped silently
    trunk = model.backbone.state_dict()
    assert set(trunk) == set(source) - {"fc.weight", "fc.bias"}
    for key, value in trunk.items():
        torch.testing.assert_close(value, source[key], msg=key)


def test_timm_deit_state_dict_loads_into_the_trunk(tmp_path):
    torch.manual_seed(2)
    source = timm.create_model("deit_small_patch16_224", pretrained=False).state_dict()
    path = tmp_path / "deit_s.pth"
    torch.save({"model": source}, path)  # the DeiT release wraps its weights like this
    model = build_mask_generator("deit_small", 3, weights=str(path))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, source[key], msg=key)


def test_whole_generator_state_dict_round_trips(tmp_path, caplog):
    saved = SmallFcnCam(4)
    path = tmp_path / "generator.pt"
    torch.save(saved.state_dict(), path)
    with caplog.at_level(logging.WARNING):
        loaded = build_mask_generator("small_fcn", 4, weights=path)
    assert not caplog.records
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, saved.state_dict()[key], msg=key)


def test_partial_match_warns_listing_the_keys(tmp_path, caplog):
    state = SmallFcnCam(4).state_dict()
    path = tmp_path / "other_classes.pt"
    torch.save({**state, "extra.weight": torch.zeros(1)}, path)
    with caplog.at_level(logging.WARNING):
        model = build_mask_generator("small_fcn", 6, weights=path)
    message = caplog.text
    assert str(path) in message
    assert "wrong shape (skipped): classifier.weight" in message
    assert "not used: extra.weight" in message
    torch.testing.assert_close(model.backbone[0][0].weight, state["backbone.0.0.weight"])


def test_garbage_weights_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(ValueError, match="garbage.pth"):
        build_mask_generator("resnet50", 3, weights=path)


def test_weights_that_fit_nothing_name_the_file(tmp_path):
    path = tmp_path / "unrelated.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match=r"unrelated\.pt.*encoder\.weight"):
        build_mask_generator("small_fcn", 3, weights=path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match=r"unrelated\.pt.*state dict"):
        build_mask_generator("small_fcn", 3, weights=path)


@pytest.mark.parametrize(
    "arch,options,message",
    [
        ("small_fcn", {"dilations": [2, 0]}, "dilations must be two integers"),
        ("small_fcn", {"output_stride": 5}, "output_stride must be 4 or 8"),
        ("resnet50", {"dilations": [2, 3]}, "unexpected keyword argument 'dilations'"),
        ("small_fcn2", {}, "unknown mask generator 'small_fcn2'"),
    ],
)
def test_check_generator_options_names_what_does_not_fit(arch, options, message):
    with pytest.raises(ValueError, match=message):
        check_generator_options(arch, options)


def test_check_generator_options_accepts_what_builds():
    for arch in GENERATOR_ARCHITECTURES:
        check_generator_options(arch, {})
    check_generator_options("small_fcn", {"dilations": [2, 4], "output_stride": 8})
