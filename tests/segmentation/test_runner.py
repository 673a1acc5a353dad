"""Training through MMEngine's Runner: train + val, weights_only checkpoints, resume, torchrun."""

import shutil
from types import SimpleNamespace

import pytest
import torch

from layouts import PAIR_CLASSES
from semples.segmentation.checkpoints import load_checkpoint
from semples.segmentation.config import TrainSettings, training_config
from semples.segmentation.hooks import FiniteLossHook
from semples.segmentation.runner import model_state, train, training_history

TOY = "deeplabv2_r18-d8_1xb10-3k_toy-64x64"
LOAD_ONLY = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
             dict(type="PackSegInputs")]  # fmt: skip


def _config(pairs, work_dir, max_iters=2, cfg_options=None, **settings):
    settings = TrainSettings(**{"crop_size": 32, "batch_size": 2, "max_iters": max_iters,
                                "num_workers": 0, "checkpoint_interval": 1, "log_interval": 1,
                                **settings})  # fmt: skip
    cfg = training_config(TOY, classes=PAIR_CLASSES, train_pairs=pairs[:4], val_pairs=pairs[4:],
                          settings=settings, cfg_options=cfg_options)  # fmt: skip
    cfg.work_dir = str(work_dir)
    return cfg


def test_two_iterations_train_validate_and_leave_a_weights_only_checkpoint(tiny_pairs, tmp_path):
    cfg = _config(tiny_pairs, tmp_path / "run")
    checkpoint_path = train(cfg)

    assert checkpoint_path.name == "iter_2.pth"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert checkpoint["meta"]["iter"] == 2 and "optimizer" in checkpoint
    state, iterations = model_state(checkpoint_path)
    assert iterations == 2 and "decode_head.branches.0.weight" in state
    history = training_history(cfg.work_dir)
    assert history["iteration"].tolist() == [1, 2]
    assert history["loss"].notna().all() and history["lr"].iloc[0] > history["lr"].iloc[1]
    assert 0 <= history["val_miou"].iloc[-1] <= 1  # IoUMetric on the 2 validation pairs


def test_a_rerun_resumes_from_the_latest_checkpoint_exactly(tiny_pairs, tmp_path):
    options = {"train_dataloader": {"dataset": {"pipeline": LOAD_ONLY}},  # no random transforms
               "default_hooks": {"checkpoint": {"max_keep_ckpts": 2}}}  # fmt: skip
    straight = _config(tiny_pairs, tmp_path / "straight", 4, options, checkpoint_interval=2)
    expected, _ = model_state(train(straight))

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copy(tmp_path / "straight/iter_2.pth", interrupted / "iter_2.pth")
    (interrupted / "last_checkpoint").write_text(str(interrupted / "iter_2.pth"))
    resumed_cfg = _config(tiny_pairs, interrupted, 4, options, checkpoint_interval=2)
    resumed, iterations = model_state(train(resumed_cfg))

    assert iterations == 4
    assert training_history(interrupted)["iteration"].tolist() == [3, 4]
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)


def test_checkpoints_hold_no_mmengine_objects(tiny_pairs, tmp_path):
    train(_config(tiny_pairs, tmp_path, max_iters=1))
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp_path / "iter_1.pth"))
    assert unsafe == []


def test_a_non_finite_loss_stops_training_naming_the_iteration():
    runner = SimpleNamespace(iter=41)
    FiniteLossHook().after_train_iter(runner, 0, outputs={"loss": torch.tensor(1.0)})
    with pytest.raises(FloatingPointError, match="nan at iteration 42.*balanced_ce"):
        FiniteLossHook().after_train_iter(runner, 0, outputs={"loss": torch.tensor(float("nan"))})


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth does not exist"):
        load_checkpoint(tmp_path / "nowhere.pth")


@pytest.mark.slow
def test_two_processes_under_torchrun_train_with_ddp_on_the_cpu(tiny_pairs, tmp_path):
    cfg = _config(tiny_pairs, tmp_path / "ddp")
    cfg.train_dataloader.batch_size = 1  # the recipe's 2 over two processes
    checkpoint_path = train(cfg, processes=2)
    state, iterations = model_state(checkpoint_path)
    assert iterations == 2 and (tmp_path / "ddp/config.py").is_file()
    assert not any(name.startswith("module.") for name in state)


@pytest.mark.slow
def test_a_failing_torchrun_rank_raises_with_its_error_from_the_log(tiny_pairs, tmp_path):
    cfg = _config(tiny_pairs, tmp_path / "ddp")
    cfg.model.backbone.depth = 7  # ResNet has no such depth: every rank fails building the model
    with pytest.raises(RuntimeError, match=r"(?s)exit code 1; the end of .*torchrun\.log.*"
                                           r"invalid depth 7 for resnet"):  # fmt: skip
        train(cfg, processes=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_two_iterations_with_amp_on_cuda(tiny_pairs, tmp_path):
    cfg = _config(tiny_pairs, tmp_path)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"
    state, iterations = model_state(train(cfg))
    assert iterations == 2 and all(torch.isfinite(t).all() for t in state.values())
