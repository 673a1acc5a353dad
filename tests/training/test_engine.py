"""The shared training engine on a tiny regression task: order, schedule, finiteness check,
checkpoint and resume, history; and the three loops besides the stages under 2 DDP processes."""

import math

import pandas as pd
import pytest
import torch
from ddp_jobs import train_three_loops
from torch import nn
from torch.utils.data import TensorDataset

from semples.training import distributed
from semples.training.engine import (
    RandomState,
    Schedule,
    Task,
    cosine_lr,
    deal,
    fit,
    optimizer_step,
    permutation,
    steps_per_epoch,
)

DATA = TensorDataset(torch.linspace(-1, 1, 10)[:, None], torch.linspace(0, 3, 10)[:, None])
SCHEDULE = Schedule(epochs=3, batch_size=4, seed=0)


class CountingData(TensorDataset):
    """Records the epochs it was told, as the image datasets' seeded augmentation needs."""

    def __init__(self) -> None:
        super().__init__(*DATA.tensors)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def regression_task(seed: int = 0, **options) -> Task:
    torch.manual_seed(seed)
    model = nn.Linear(1, 1)

    def step(module: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        error = module(x) - y
        return {"total": (error**2).mean(), "bias": error.mean()}

    return Task(
        name="regression",
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        step=step,
        lr=lambda step, total: cosine_lr(0.1, step, total),
        checkpointed={"model": model},
        **options,
    )


def test_history_has_a_row_per_step_with_tags_lr_and_terms():
    data = CountingData()
    history = fit(regression_task(tags={"stage": 7}), data, SCHEDULE, progress=False)
    assert history.columns.tolist() == ["stage", "epoch", "step", "lr", "total", "bias"]
    assert history["step"].tolist() == list(range(1, 10))  # ceil(10 / 4) = 3 steps per epoch
    assert history["epoch"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert history["lr"].tolist() == [cosine_lr(0.1, s, 9) for s in range(9)]
    assert data.epochs == [0, 1, 2]
    assert history["total"].iloc[-3:].mean() < history["total"].iloc[:3].mean()


def test_max_steps_drop_last_and_group_multipliers():
    task = regression_task(lr_multipliers=(10.0,))
    seen = []
    task.after_step = lambda: seen.append(task.optimizer.param_groups[0]["lr"]) or {}
    schedule = Schedule(epochs=3, batch_size=4, seed=0, max_steps=5, drop_last=True)
    history = fit(task, DATA, schedule, progress=False)
    assert history["step"].tolist() == [1, 2, 3, 4, 5]  # 2 whole batches per epoch
    assert history["epoch"].tolist() == [0, 0, 1, 1, 2]
    assert seen == pytest.approx([10 * lr for lr in history["lr"]])


def test_same_seed_same_result_and_a_custom_order_is_used():
    one, two = regression_task(), regression_task()
    assert fit(one, DATA, SCHEDULE, progress=False).equals(fit(two, DATA, SCHEDULE, progress=False))
    assert torch.equal(one.module.weight, two.module.weight)
    reversed_order = regression_task(order=lambda epoch: list(range(9, -1, -1)))
    history = fit(reversed_order, DATA, SCHEDULE, progress=False)
    assert not history["total"].equals(
        fit(regression_task(), DATA, SCHEDULE, progress=False)["total"]
    )


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    generator = torch.Generator().manual_seed(3)

    def noisy(seed: int = 0) -> Task:
        """A task that draws from a generator, which the checkpoint must keep."""
        task = regression_task(seed)
        inner = task.step
        task.step = lambda module, batch: {
            **inner(module, batch),
            "noise": torch.rand(1, generator=generator)[0],
        }
        task.checkpointed = {**task.checkpointed, "random": RandomState(generator)}
        return task

    uninterrupted = noisy()
    full = fit(uninterrupted, DATA, SCHEDULE, progress=False)

    def crash_after_first_epoch(epoch: int) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    generator.manual_seed(3)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(noisy(), DATA, SCHEDULE, checkpoint, False, on_epoch_end=crash_after_first_epoch)
    assert checkpoint.is_file()
    generator.manual_seed(99)  # the checkpoint restores the generator's state
    resumed = noisy(seed=5)  # and the weights, whatever the fresh model's
    history = fit(resumed, DATA, SCHEDULE, checkpoint, progress=False)
    pd.testing.assert_frame_equal(history, full)
    assert torch.equal(resumed.module.weight, uninterrupted.module.weight)
    assert not checkpoint.exists()  # scratch: the finished run removes it


def test_a_non_finite_loss_names_the_task_step_and_terms_and_leaves_the_weights():
    task = regression_task()
    with torch.no_grad():
        task.module.bias.fill_(math.nan)
    before = task.module.weight.detach().clone()
    with pytest.raises(
        FloatingPointError, match=r"regression: non-finite loss at step 1 \(total=nan"
    ):
        fit(task, DATA, SCHEDULE, progress=False)
    assert torch.equal(task.module.weight, before) and task.module.weight.grad is None


def test_too_few_items_for_a_whole_batch_is_an_error():
    schedule = Schedule(epochs=1, batch_size=16, seed=0, drop_last=True)
    with pytest.raises(ValueError, match="regression: 10 items make no whole batch of 16"):
        fit(regression_task(), DATA, schedule, progress=False)


def test_optimizer_step_calls_the_message_only_on_failure():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    optimizer_step(optimizer, model(torch.ones(1, 2)).sum(), lambda: pytest.fail("called"))
    assert not torch.equal(model.weight, before)
    with pytest.raises(FloatingPointError, match="model X at step 3"):
        optimizer_step(optimizer, torch.tensor(math.inf), lambda: "model X at step 3")


def test_epoch_order_is_a_seeded_permutation_dealt_across_processes():
    one = permutation(10, seed=0, epoch=0)
    assert sorted(one) == list(range(10))
    assert one == permutation(10, seed=0, epoch=0)
    assert one != permutation(10, seed=0, epoch=1)
    shards = [deal(one, rank=r, world=3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert not set(shards[0]) & set(shards[1])
    assert deal(list(range(10)), rank=1, world=3) == [1, 4, 7]
    assert steps_per_epoch(10, 4, world=1) == 3 and steps_per_epoch(10, 4, 1, drop_last=True) == 2
    assert steps_per_epoch(10, 4, world=2) == 2


def test_cam_classifier_irnet_and_clip_train_as_two_ddp_processes(tmp_path):
    result = distributed.launch(train_three_loops, tmp_path, processes=2)
    # per process: 4 of 8 images in batches of 2; 4 of 8 IR labels in batches of 2; 16 of 32
    # captioned scenes in batches of 8.
    assert result["lengths"] == {"cam": 2, "irnet": 2, "clip": 2}
    assert result["same"] == {"cam": True, "irnet": True, "clip": True}
    assert result["finite"]
