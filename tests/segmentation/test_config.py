"""The packaged recipes and a run's overrides of them."""

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from layouts import PAIR_CLASSES as CLASSES
from semples.segmentation.config import (
    TrainSettings,
    config_path,
    fingerprint,
    packaged_configs,
    training_config,
)  # fmt: skip

VOC = "deeplabv2_r101-d8_1xb10-20k_voc-321x321"
TOY = "deeplabv2_r18-d8_1xb10-3k_toy-64x64"
PAIRS = [("a.jpg", "a.png")]


def _config(name=VOC, **kwargs):
    return training_config(name, classes=CLASSES, train_pairs=PAIRS, **kwargs)


def test_the_packaged_configs_are_the_voc_recipe_and_the_toy():
    assert packaged_configs() == [VOC, TOY]
    with pytest.raises(FileNotFoundError, match="no segmentation config 'nope'"):
        config_path("nope")


@pytest.mark.parametrize("name", [TOY, VOC])
def test_every_packaged_config_builds_without_pretrained_weights(name):
    init_default_scope("mmseg")
    cfg = _config(name)
    assert cfg.model.backbone.get("init_cfg") is None and cfg.model.pretrained is None
    model = MODELS.build(cfg.model)
    assert model.decode_head.num_classes == len(CLASSES)
    out = model.decode_head(model.extract_feat(torch.zeros(1, 3, 33, 33)))
    assert out.shape == (1, 3, 5, 5)  # output stride 8


def test_the_voc_recipe_is_deeplab_pytorchs():
    cfg = _config()
    assert cfg.train_dataloader.batch_size == 10 and cfg.train_cfg.max_iters == 20000
    assert cfg.param_scheduler[0]["type"] == "PolyLR" and cfg.param_scheduler[0]["power"] == 0.9
    assert cfg.param_scheduler[0]["end"] == 20000
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.momentum, optimizer.weight_decay) == (2.5e-4, 0.9, 5e-4)
    crop = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "RandomCrop"][0]
    assert crop["crop_size"] == (321, 321) and cfg.model.data_preprocessor.size == (321, 321)
    rescale = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "RandomRescale"]
    assert rescale[0]["ratios"] == (0.5, 0.75, 1.0, 1.25, 1.5)
    assert cfg.model.backbone.norm_eval and not cfg.model.backbone.norm_cfg.requires_grad


def test_head_weights_learn_at_10x_and_head_biases_at_20x_without_decay():
    init_default_scope("mmseg")
    cfg = _config()
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g["params"][0])]: g for g in wrapper.optimizer.param_groups}
    base = 2.5e-4
    assert groups["backbone.conv1.weight"]["lr"] == pytest.approx(base)
    for branch in range(4):
        weight, bias = (groups[f"decode_head.branches.{branch}.{k}"] for k in ("weight", "bias"))
        assert weight["lr"] == pytest.approx(10 * base) and weight["weight_decay"] == 5e-4
        assert bias["lr"] == pytest.approx(20 * base) and bias["weight_decay"] == 0


def test_overrides_reach_every_place_they_live(tmp_path):
    weights = tmp_path / "r101.pth"
    weights.touch()
    settings = TrainSettings(crop_size=48, batch_size=3, max_iters=7, lr=0.5, loss="balanced_ce",
                             val_interval=100, checkpoint_interval=2, num_workers=0)  # fmt: skip
    cfg = _config(settings=settings, seed=3, backbone_weights=str(weights),
                  backbone_prefix="backbone.", val_pairs=PAIRS,
                  cfg_options={"model": {"decode_head": {"dilations": (1, 2)}}})  # fmt: skip
    crop = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "RandomCrop"][0]
    assert crop["crop_size"] == (48, 48) and cfg.model.data_preprocessor.size == (48, 48)
    assert cfg.train_dataloader.batch_size == 3 and cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.train_cfg.max_iters == 7 and cfg.param_scheduler[0]["end"] == 7
    assert cfg.train_cfg.val_interval == 100
    assert cfg.model.decode_head.loss_decode["type"] == "BalancedCrossEntropyLoss"
    assert cfg.default_hooks.checkpoint.interval == 2
    assert cfg.train_dataloader.num_workers == 0 and not cfg.train_dataloader.persistent_workers
    assert cfg.model.backbone.init_cfg == dict(
        type="Pretrained", checkpoint=str(weights), prefix="backbone."
    )
    assert cfg.randomness.seed == 3 and cfg.model.decode_head.dilations == (1, 2)
    assert cfg.val_dataloader.dataset.pairs == [list(PAIRS[0])]


def test_without_validation_pairs_there_is_no_val_loop():
    cfg = _config(settings=TrainSettings(num_workers=0))
    assert cfg.val_dataloader is None and cfg.val_cfg is None and cfg.val_evaluator is None


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(loss="focal"), "loss must be one of"),
        (dict(max_iters=0), "max_iters must be a positive integer"),
        (dict(lr=-1.0), "lr must be >= 0"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(**settings)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth do not exist"):
        _config(backbone_weights=str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="no \\(image, pseudo mask\\) pair"):
        training_config(VOC, classes=CLASSES, train_pairs=[])


def test_the_fingerprint_follows_the_run_and_not_the_work_dir():
    first, second = _config(), _config()
    second.work_dir = "elsewhere"
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(_config(seed=1))
    other_masks = training_config(VOC, classes=CLASSES, train_pairs=[("a.jpg", "b.png")])
    assert fingerprint(first) != fingerprint(other_masks)


def test_the_backbone_starts_from_a_torchvision_state_dict_file(tmp_path):
    """torchvision's ResNet keys are MMSegmentation's (its fc is ignored); depth 18 keeps the
    file small, the loading is the same as for ResNet-101."""
    import torchvision

    init_default_scope("mmseg")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, tmp_path / "resnet18.pth")
    shallow = {"model": {"backbone": {"depth": 18}, "decode_head": {"in_channels": 512}}}
    cfg = _config(backbone_weights=str(tmp_path / "resnet18.pth"), cfg_options=shallow)
    model = MODELS.build(cfg.model)
    model.init_weights()
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer3.0.downsample.1.running_var"):
        torch.testing.assert_close(model.backbone.state_dict()[key], reference[key])


def test_amp_wraps_the_optimiser_on_cuda_only(monkeypatch):
    assert _config().optim_wrapper.type == "OptimWrapper"  # this CPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    amp = _config().optim_wrapper
    assert amp.type == "AmpOptimWrapper" and amp.loss_scale == "dynamic"
    assert _config(settings=TrainSettings(amp=False)).optim_wrapper.type == "OptimWrapper"
