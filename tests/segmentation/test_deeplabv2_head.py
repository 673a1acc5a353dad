"""DeepLabV2's head: class logits at the feature size, the sum of its four dilated branches."""

import pytest
import torch

from semples.segmentation.deeplabv2_head import DeepLabV2Head


def _head(**overrides) -> DeepLabV2Head:
    torch.manual_seed(0)
    head = DeepLabV2Head(**{"in_channels": 16, "num_classes": 5, "in_index": -1, **overrides})
    head.init_weights()
    return head.eval()


def test_output_is_class_logits_at_the_feature_size():
    features = torch.randn(2, 16, 9, 11)
    assert _head()([features]).shape == (2, 5, 9, 11)


def test_output_is_the_sum_of_four_dilated_branches_and_nothing_else():
    head = _head()
    assert [b.dilation for b in head.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert not hasattr(head, "conv_seg")
    features = torch.randn(1, 16, 30, 30)
    expected = sum(branch(features) for branch in head.branches)
    torch.testing.assert_close(head([features]), expected)
    trainable = {name.split(".")[0] for name, _ in head.named_parameters()}
    assert trainable == {"branches"}


def test_needs_a_dilation():
    with pytest.raises(ValueError, match="needs at least one dilation"):
        _head(dilations=())


def test_the_packaged_model_config_builds_and_runs_at_output_stride_8():
    from importlib.resources import files

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    path = files("semples.segmentation") / "configs/_base_/models/deeplabv2_r101-d8.py"
    config = Config.fromfile(str(path))
    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(config.model).eval()
    assert type(model.decode_head) is DeepLabV2Head
    frozen_bn = [p.requires_grad for n, p in model.backbone.named_parameters() if ".bn" in n]
    assert model.backbone.norm_eval and frozen_bn and not any(frozen_bn)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 65, 65), mode="tensor")
    assert logits.shape == (1, 21, 9, 9)
