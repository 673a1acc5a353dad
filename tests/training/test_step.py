"""The optimiser step every training loop shares: a non-finite loss never reaches the weights."""

import pytest
import torch

from semples.training.step import optimizer_step


def _model_and_optimizer():
    model = torch.nn.Linear(2, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_a_finite_loss_steps():
    model, optimizer = _model_and_optimizer()
    before = model.weight.detach().clone()
    optimizer_step(optimizer, model(torch.ones(1, 2)).sum(), lambda: "unused")
    assert not torch.equal(model.weight, before)


def test_a_non_finite_loss_raises_the_message_and_leaves_the_weights():
    model, optimizer = _model_and_optimizer()
    before = model.weight.detach().clone()
    loss = model(torch.ones(1, 2)).sum() * float("nan")
    with pytest.raises(FloatingPointError, match="model X at step 3"):
        optimizer_step(optimizer, loss, lambda: "model X at step 3")
    assert torch.equal(model.weight, before) and model.weight.grad is None
