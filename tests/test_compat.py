"""The compat module makes the CPU-only stack importable and does nothing where real ops exist."""

import importlib
import subprocess
import sys

import pytest
import torch

from semples import compat


@pytest.mark.parametrize("module", ["torchvision", "open_clip", "timm", "mmseg.models"])
def test_module_imports_in_a_fresh_interpreter(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import semples, {module}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_mmseg_encoder_decoder_builds_and_runs_forward():
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    norm = dict(type="BN", requires_grad=True)
    config = ConfigDict(
        type="EncoderDecoder",
        data_preprocessor=dict(
            type="SegDataPreProcessor", mean=[0.0] * 3, std=[1.0] * 3, size=(64, 64)
        ),
        backbone=dict(
            type="ResNetV1c", depth=18, out_indices=(3,), norm_cfg=norm,
            strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
        ),
        decode_head=dict(
            type="FCNHead", in_channels=512, in_index=0, channels=16, num_convs=1,
            num_classes=4, norm_cfg=norm, align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )  # fmt: skip
    model = MODELS.build(config).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64), mode="tensor")
    assert logits.shape == (2, 4, 8, 8)
    assert torch.isfinite(logits).all()


def test_point_sample_stand_in_matches_grid_sample_semantics():
    features = torch.arange(16.0).view(1, 1, 4, 4)
    centres = torch.tensor([[[0.125, 0.125], [0.875, 0.875]]])
    sampled = compat.point_sample(features, centres, align_corners=False)
    assert sampled.shape == (1, 1, 2)
    assert sampled.flatten().tolist() == [0.0, 15.0]


def test_sigmoid_focal_loss_stand_in_against_its_formula():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    target = torch.tensor([2])
    loss = compat.sigmoid_focal_loss(logits, target, gamma=2.0, alpha=0.25, reduction="none")
    p = logits.sigmoid()
    expected = torch.stack(
        [
            -(0.75) * p[0, 0] ** 2 * torch.log(1 - p[0, 0]),
            -(0.75) * p[0, 1] ** 2 * torch.log(1 - p[0, 1]),
            -(0.25) * (1 - p[0, 2]) ** 2 * torch.log(p[0, 2]),
        ]
    )
    torch.testing.assert_close(loss[0], expected)


def test_unavailable_mmcv_op_raises_module_not_found():
    if not compat.MMCV_OPS_STAND_IN:
        pytest.skip("the real mmcv.ops is installed")
    with pytest.raises(ModuleNotFoundError, match="needs mmcv's compiled extension"):
        from mmcv.ops import PSAMask  # noqa: F401


def test_stand_ins_do_nothing_where_real_ops_exist(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "mmcv._ext" else real_find_spec(name, *a),
    )
    monkeypatch.delitem(sys.modules, "mmcv.ops", raising=False)
    assert compat.ensure_mmcv_ops() is False
    assert "mmcv.ops" not in sys.modules
    monkeypatch.setattr(compat, "torchvision_extension_loads", lambda: True)
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    assert compat.ensure_torchvision_ops() is False
